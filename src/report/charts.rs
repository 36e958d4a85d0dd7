//! The report's charts, drawn with plotters into SVG strings (text stays `<text>`: no fonts or C
//! libraries needed). Each run keeps one colour in every chart, its place in the run list.

use anyhow::anyhow;
use plotters::prelude::*;

use super::RunData;
use crate::rundir::series::eval_x;

/// Most points of one training-loss line: a figure needs the trend, not every step.
const MAX_LINE_POINTS: usize = 800;
/// Size of one panel, in SVG pixels.
const PANEL_W: u32 = 560;
const PANEL_H: u32 = 400;

/// Distinct colours readable on white (matplotlib's tab10 order).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(run_index: usize) -> RGBColor {
    COLOURS[run_index % COLOURS.len()]
}

/// One rendered chart: the file it goes to (beside `report.md`) and its SVG text.
#[derive(Debug, Clone)]
pub struct Chart {
    pub file: &'static str,
    /// What the Markdown says above the image.
    pub title: &'static str,
    pub svg: String,
}

/// One line of a panel.
struct Line {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
    /// Draw a marker at every point (few points: epochs, blocks).
    markers: bool,
}

/// One plot area: a title, axis names, lines; `x_names` labels integer x positions (layers).
struct Panel {
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    lines: Vec<Line>,
    x_names: Option<Vec<String>>,
}

impl Panel {
    fn new(title: impl Into<String>, x_desc: &'static str, y_desc: &'static str) -> Panel {
        Panel {
            title: title.into(),
            x_desc,
            y_desc,
            lines: Vec::new(),
            x_names: None,
        }
    }

    fn push(&mut self, label: &str, run_index: usize, points: Vec<(f64, f64)>, markers: bool) {
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if !points.is_empty() {
            self.lines.push(Line {
                label: label.to_string(),
                colour: colour(run_index),
                points,
                markers,
            });
        }
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Every chart the runs have data for.
pub fn render_all(runs: &[RunData]) -> anyhow::Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let mut add = |file, title, panels: Vec<Panel>| -> anyhow::Result<()> {
        let panels: Vec<Panel> = panels.into_iter().filter(|p| !p.is_empty()).collect();
        if !panels.is_empty() {
            charts.push(Chart {
                file,
                title,
                svg: render(&panels).map_err(|e| anyhow!("drawing {file}: {e}"))?,
            });
        }
        Ok(())
    };
    add(
        "curves.svg",
        "Training loss and validation top-1",
        curves(runs),
    )?;
    add(
        "scales_history.svg",
        "Network mean of s, t, u per epoch (the paper's Fig. 6)",
        scales_history(runs),
    )?;
    add(
        "scales_blocks.svg",
        "Per-block channel mean of s, t, u (the paper's Fig. 7)",
        scales_blocks(runs),
    )?;
    add(
        "kernels.svg",
        "Per-layer spread of the deploy (merged) kernels",
        kernels(runs),
    )?;
    Ok(charts)
}

/// Training loss per logged step (bucket means past [`MAX_LINE_POINTS`]) and validation top-1
/// per epoch, on one epoch axis.
fn curves(runs: &[RunData]) -> Vec<Panel> {
    let mut loss = Panel::new("training loss", "epoch", "loss");
    let mut top1 = Panel::new("validation top-1", "epoch", "top-1 (%)");
    for (i, r) in runs.iter().enumerate() {
        let steps: Vec<(f64, f64)> = r
            .series
            .steps
            .iter()
            .map(|p| (p.x, p.loss as f64))
            .collect();
        loss.push(r.id(), i, bucket_means(&steps, MAX_LINE_POINTS), false);
        let evals = r
            .series
            .evals
            .iter()
            .map(|(_, e)| (eval_x(e), e.top1))
            .collect();
        top1.push(r.id(), i, evals, true);
    }
    vec![loss, top1]
}

/// Reduces a line to at most `max` points, each the mean of consecutive points: a static figure
/// shows the trend (the dashboard's min/max decimation keeps the spikes instead).
fn bucket_means(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// Fig. 6: per HS run, the network mean of s, t and u after each epoch; one panel per scale.
fn scales_history(runs: &[RunData]) -> Vec<Panel> {
    let mut panels = ["s (3x3 branch)", "t (1x1 branch)", "u (identity)"]
        .map(|name| Panel::new(format!("network mean of {name}"), "epoch", "mean"));
    for (i, r) in runs.iter().enumerate() {
        let h = &r.scales_history;
        for (k, panel) in panels.iter_mut().enumerate() {
            let points = h
                .iter()
                .filter_map(|e| [e.s, e.t, e.u][k].map(|v| (e.epoch as f64, v)))
                .collect();
            panel.push(r.id(), i, points, true);
        }
    }
    panels.into()
}

/// Fig. 7: per block, the channel means of s, t and u (an HS run's last epoch, a Target run's
/// frozen scales); one panel per scale, blocks on the x axis.
fn scales_blocks(runs: &[RunData]) -> Vec<Panel> {
    let mut panels = ["s (3x3 branch)", "t (1x1 branch)", "u (identity)"]
        .map(|name| Panel::new(format!("block mean of {name}"), "block", "mean"));
    let mut names: Vec<String> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Some(b) = &r.block_means else { continue };
        if b.blocks.len() > names.len() {
            names = b.blocks.iter().map(|(n, ..)| n.clone()).collect();
        }
        let label = format!("{} ({})", r.id(), b.source);
        let at = |k: usize| k as f64;
        let s = b.blocks.iter().enumerate().map(|(k, x)| (at(k), x.1));
        let t = b.blocks.iter().enumerate().map(|(k, x)| (at(k), x.2));
        let u = b
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(k, x)| x.3.map(|u| (at(k), u)));
        panels[0].push(&label, i, s.collect(), true);
        panels[1].push(&label, i, t.collect(), true);
        panels[2].push(&label, i, u.collect(), true);
    }
    for p in &mut panels {
        p.x_names = Some(names.clone());
    }
    panels.into()
}

/// Per layer of the merged (deploy) kernel: the centre and surround standard deviations from
/// `kernel_stats.json`, and (max − min) / std from a `quantize` event.
fn kernels(runs: &[RunData]) -> Vec<Panel> {
    let mut centre = Panel::new("merged kernel: centre-tap std", "layer", "std");
    let mut surround = Panel::new("merged kernel: surround-tap std", "layer", "std");
    let mut range = Panel::new("deploy kernel: (max − min) / std", "layer", "range / std");
    let mut stat_names: Vec<String> = Vec::new();
    let mut range_names: Vec<String> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if let Some(k) = &r.kernel_stats {
            if k.layers.len() > stat_names.len() {
                stat_names = k.layers.iter().map(|l| l.layer.clone()).collect();
            }
            let c = k.layers.iter().enumerate();
            centre.push(
                r.id(),
                i,
                c.clone()
                    .map(|(x, l)| (x as f64, l.merged.centre_std))
                    .collect(),
                true,
            );
            surround.push(
                r.id(),
                i,
                c.map(|(x, l)| (x as f64, l.merged.surround_std)).collect(),
                true,
            );
        }
        if let Some(q) = &r.quantize {
            if q.layers.len() > range_names.len() {
                range_names = q.layers.iter().map(|l| l.name.clone()).collect();
            }
            let points = q
                .layers
                .iter()
                .enumerate()
                .map(|(x, l)| (x as f64, l.range_over_std))
                .collect();
            range.push(r.id(), i, points, true);
        }
    }
    centre.x_names = Some(stat_names.clone());
    surround.x_names = Some(stat_names);
    range.x_names = Some(range_names);
    vec![centre, surround, range]
}

/// The y range of some lines, padded by 5% (a flat line gets ±10% of its value, or ±1).
fn y_range(lines: &[Line]) -> (f64, f64) {
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    }
}

fn x_range(panel: &Panel) -> (f64, f64) {
    if let Some(names) = &panel.x_names {
        return (-0.5, names.len().max(1) as f64 - 0.5);
    }
    let xs = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    // A little room at both ends, so the first and last markers are not cut in half.
    if hi > lo {
        let pad = (hi - lo) * 0.02;
        (lo - pad, hi + pad)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// Draws the panels side by side into one SVG.
fn render(panels: &[Panel]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let size = (PANEL_W * panels.len() as u32, PANEL_H);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = x_range(panel);
    let (y0, y1) = y_range(&panel.lines);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let names = panel.x_names.clone().unwrap_or_default();
    // Layers sit on integers: label those by name, nothing between them.
    let layer_name = move |x: &f64| {
        if (x - x.round()).abs() < 1e-9 && *x >= 0.0 {
            names.get(x.round() as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .axis_desc_style(("sans-serif", 13))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225));
    if let Some(names) = &panel.x_names {
        // About eight names fit under a panel; plotters then picks every 1st, 2nd or 5th layer.
        mesh.x_labels(names.len().clamp(2, 8))
            .x_label_formatter(&layer_name);
    }
    mesh.draw()?;
    for line in &panel.lines {
        let c = line.colour;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                c.stroke_width(2),
            ))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        if line.markers {
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_corner(&panel.lines, (x0, x1), (y0, y1)))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// The right-hand corner with fewer points under it, so the legend covers as little of the
/// lines as it can: below rising curves (accuracy), above falling ones (loss).
fn legend_corner(
    lines: &[Line],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    let right = x0 + 0.6 * (x1 - x0);
    let mid = (y0 + y1) / 2.0;
    let (mut upper, mut lower) = (0usize, 0usize);
    for &(x, y) in lines.iter().flat_map(|l| &l.points) {
        if x >= right {
            if y > mid { upper += 1 } else { lower += 1 }
        }
    }
    if upper > lower {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_sits_in_the_corner_the_lines_end_away_from() {
        let line = |points: Vec<(f64, f64)>| Line {
            label: "r".into(),
            colour: colour(0),
            points,
            markers: false,
        };
        let rising = [line(vec![(0.0, 10.0), (1.0, 60.0)])];
        let falling = [line(vec![(0.0, 6.0), (1.0, 1.0)])];
        assert!(matches!(
            legend_corner(&rising, (0.0, 1.0), (0.0, 70.0)),
            SeriesLabelPosition::LowerRight
        ));
        assert!(matches!(
            legend_corner(&falling, (0.0, 1.0), (0.0, 7.0)),
            SeriesLabelPosition::UpperRight
        ));
    }

    #[test]
    fn bucket_means_average_consecutive_points() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, (i * 2) as f64)).collect();
        assert_eq!(bucket_means(&pts, 20), pts);
        // 10 points into at most 4: buckets of 3 → (1, 2), (4, 8), (7, 14), (9, 18).
        assert_eq!(
            bucket_means(&pts, 4),
            vec![(1.0, 2.0), (4.0, 8.0), (7.0, 14.0), (9.0, 18.0)]
        );
    }

    #[test]
    fn flat_and_single_point_ranges_are_not_empty() {
        let line = |points: Vec<(f64, f64)>| Line {
            label: "r".into(),
            colour: colour(0),
            points,
            markers: true,
        };
        assert_eq!(y_range(&[line(vec![(0.0, 2.0)])]), (1.8, 2.2));
        assert_eq!(y_range(&[line(vec![(0.0, 0.0)])]), (-1.0, 1.0));
        let (lo, hi) = y_range(&[line(vec![(0.0, 0.0), (1.0, 10.0)])]);
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
    }
}
