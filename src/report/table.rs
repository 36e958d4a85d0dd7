//! The report's Markdown: tables of numbers and the charts by relative path.

use std::fmt::Write;

use super::RunData;
use super::charts::Chart;
use crate::model::kernel_stats::CentreSurround;
use crate::profile::RunKind;
use crate::rundir::events::ProbeResult;

/// What a missing number shows.
pub const MISSING: &str = "–";

/// A `## title` section holding one table, or nothing when there are no rows.
fn table_section(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## {title}\n");
    out.push_str(&md_table(header, rows));
    out.push('\n');
}

/// A GitHub-flavoured Markdown table; `|` inside a cell is escaped, line breaks become spaces.
pub fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A percentage with two decimals, or [`MISSING`].
fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or(MISSING.into(), |v| format!("{v:.2}"))
}

/// A standard deviation: four significant digits without an exponent down to 1e-3.
fn std_cell(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The model a probe of this run's kind measures (`target`, `hs`, `repvgg`).
fn probe_model(run: &RunData) -> Option<&'static str> {
    run.run_kind().map(|k| k.model().name())
}

/// Where a probe ran: its resolution and device, with the heap budget of a CPU probe.
fn probe_conditions(p: &ProbeResult) -> String {
    let budget = p
        .memory_limit_bytes
        .map_or(String::new(), |b| format!(", {}", crate::output::bytes(b)));
    format!("{} px, {}{budget}", p.resolution, p.device)
}

/// The MaxBS of `run`'s model and variant from every probe given or recorded.
fn max_batch_cell(run: &RunData, probes: &[&ProbeResult]) -> String {
    let Some(model) = probe_model(run) else {
        return MISSING.into();
    };
    let cells: Vec<String> = probes
        .iter()
        .filter(|p| p.model == model && p.variant == run.summary.variant)
        .map(|p| {
            let mb = p.max_batch_text();
            format!("{mb} ({})", probe_conditions(p))
        })
        .collect();
    if cells.is_empty() {
        MISSING.into()
    } else {
        cells.join("; ")
    }
}

/// The whole page.
pub fn markdown(runs: &[RunData], charts: &[Chart]) -> String {
    let mut out = String::new();
    let training: Vec<&RunData> = runs.iter().filter(|r| !r.is_probe()).collect();
    let probes: Vec<&ProbeResult> = runs.iter().flat_map(|r| &r.probes).collect();
    let _ = writeln!(out, "# RepOptimizer runs report\n");
    let _ = writeln!(
        out,
        "Made by `repopt-tui report` from {} run director{} (paths as given):\n",
        runs.len(),
        if runs.len() == 1 { "y" } else { "ies" }
    );
    for r in runs {
        let _ = writeln!(out, "- `{}`", r.dir.display());
    }
    out.push('\n');

    runs_section(&mut out, &training, &probes);
    switches_section(&mut out, &training);
    quantize_section(&mut out, &training);
    probes_section(&mut out, runs);
    charts_section(&mut out, charts);
    kernel_section(&mut out, &training);
    notes_section(&mut out, runs);
    out
}

fn runs_section(out: &mut String, training: &[&RunData], probes: &[&ProbeResult]) {
    let _ = writeln!(out, "## Runs\n");
    if training.is_empty() {
        let _ = writeln!(out, "No training runs among the directories given.\n");
        return;
    }
    let rows: Vec<Vec<String>> = training
        .iter()
        .map(|r| {
            let (best, last) = r.top1();
            let (done, planned) = r.epochs();
            let int8 = r.quantize.as_ref().and_then(|q| {
                q.schemes
                    .iter()
                    .max_by(|a, b| a.top1.total_cmp(&b.top1))
                    .map(|s| format!("{:.2} ({})", s.top1, signed_points(-s.drop)))
            });
            vec![
                r.id().to_string(),
                r.summary
                    .kind
                    .as_ref()
                    .map_or(MISSING.into(), |k| k.label().to_string()),
                if r.summary.variant.is_empty() {
                    MISSING.into()
                } else {
                    r.summary.variant.clone()
                },
                r.summary.status.to_string(),
                format!(
                    "{done}/{}",
                    planned.map_or(MISSING.into(), |p| p.to_string())
                ),
                pct(best),
                pct(last),
                r.images_per_s()
                    .map_or(MISSING.into(), |v| format!("{v:.1}")),
                max_batch_cell(r, probes),
                r.quantize
                    .as_ref()
                    .map_or(MISSING.into(), |q| format!("{:.2}", q.fp32_top1)),
                int8.unwrap_or_else(|| MISSING.into()),
            ]
        })
        .collect();
    out.push_str(&md_table(
        &[
            "run",
            "kind",
            "variant",
            "status",
            "epochs",
            "best top-1",
            "final top-1",
            "train img/s",
            "MaxBS",
            "FP32 top-1",
            "best INT8 top-1 (change)",
        ],
        &rows,
    ));
    let _ = writeln!(
        out,
        "\nTop-1 in % on the validation split (final: the last evaluated epoch). Train img/s: the \
         median over the run's `step` events. MaxBS: the largest per-device batch whose training \
         step fits, from the `probe` results of the same model and variant (resolution, device, \
         CPU heap budget). FP32 / INT8: the newest `repopt-tui quantize` of the run's deploy form; \
         every scheme is listed under Quantization.\n"
    );
}

/// The Target runs' RepOptimizer switches (the paper's Table 4 ablations).
fn switches_section(out: &mut String, training: &[&RunData]) {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = training
        .iter()
        .filter_map(|r| {
            let p = r.profile.as_ref()?;
            match p.kind {
                RunKind::Target => Some(vec![
                    r.id().to_string(),
                    p.scales
                        .as_deref()
                        .map_or(MISSING.into(), |s| format!("`{s}`")),
                    yes_no(p.average_channels()),
                    yes_no(p.reinit()),
                    yes_no(p.modify_gradients()),
                    format!("{:?}", p.reinit_identity),
                ]),
                // Plain SGD on the plain model: the RepOptimizer's parts are all off.
                RunKind::Ablation => Some(vec![
                    r.id().to_string(),
                    "none (plain SGD)".into(),
                    "no".into(),
                    "no".into(),
                    "no".into(),
                    MISSING.into(),
                ]),
                RunKind::HyperSearch | RunKind::Baseline => None,
            }
        })
        .collect();
    table_section(
        out,
        "RepOptimizer switches (Target and ablation runs)",
        &[
            "run",
            "scales",
            "average_channels",
            "reinit",
            "modify_gradients",
            "reinit_identity",
        ],
        &rows,
    );
}

fn quantize_section(out: &mut String, training: &[&RunData]) {
    let mut rows = Vec::new();
    for r in training {
        let Some(q) = &r.quantize else { continue };
        for s in &q.schemes {
            rows.push(vec![
                r.id().to_string(),
                format!("{:.2}", q.fp32_top1),
                s.weights.clone(),
                s.activations.clone(),
                s.keep_float.clone(),
                format!("{:.2}", s.top1),
                format!("{:.2}", s.drop),
            ]);
        }
    }
    table_section(
        out,
        "Quantization (INT8, simulated; the paper's §4.4)",
        &[
            "run",
            "FP32 top-1",
            "weight scales",
            "activations",
            "kept in float",
            "INT8 top-1",
            "drop (points)",
        ],
        &rows,
    );
}

fn probes_section(out: &mut String, runs: &[RunData]) {
    let mut rows = Vec::new();
    for r in runs {
        for p in &r.probes {
            rows.push(vec![
                r.id().to_string(),
                p.model.clone(),
                p.variant.clone(),
                probe_conditions(p),
                p.max_batch_text(),
                p.peak_bytes.map_or(MISSING.into(), crate::output::bytes),
                p.images_per_s_at_32
                    .map_or(MISSING.into(), |v| format!("{v:.1}")),
                p.images_per_s_at_max
                    .map_or(MISSING.into(), |v| format!("{v:.1}")),
            ]);
        }
    }
    table_section(
        out,
        "Max batch size probes (the paper's Table 2)",
        &[
            "directory",
            "model",
            "variant",
            "conditions",
            "MaxBS",
            "peak memory",
            "img/s @32",
            "img/s @MaxBS",
        ],
        &rows,
    );
}

fn charts_section(out: &mut String, charts: &[Chart]) {
    let _ = writeln!(out, "## Charts\n");
    let has = |file: &str| charts.iter().any(|c| c.file == file);
    for c in charts {
        let _ = writeln!(out, "### {}\n\n![{}]({})\n", c.title, c.title, c.file);
    }
    let missing = [
        ("curves.svg", "no run has `step` or `eval` events"),
        (
            "scales_history.svg",
            "no Hyper-Search run with `scales` events (Fig. 6)",
        ),
        (
            "scales_blocks.svg",
            "no HS run with `scales` events and no Target run with a frozen scales file (Fig. 7)",
        ),
        (
            "kernels.svg",
            "no run with a `kernel_stats.json` or a `quantize` event",
        ),
    ];
    let not_drawn: Vec<&str> = missing
        .iter()
        .filter(|(file, _)| !has(file))
        .map(|(_, why)| *why)
        .collect();
    for why in &not_drawn {
        let _ = writeln!(out, "- Not drawn: {why}.");
    }
    if !not_drawn.is_empty() {
        out.push('\n');
    }
}

/// Table 11: per run with kernel statistics, per layer the centre and surround standard
/// deviations in each form.
fn kernel_section(out: &mut String, training: &[&RunData]) {
    let with: Vec<&&RunData> = training
        .iter()
        .filter(|r| r.kernel_stats.is_some())
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Kernel statistics (the paper's Table 11)\n\nStandard deviation of the 3x3 kernels' centre \
         taps (c) and eight surrounding taps (s), as trained, with BN fused, and merged into the one \
         deploy kernel; c/s is their ratio. From each run's `kernel_stats.json` (its final weights).\n"
    );
    let cs = |c: Option<&CentreSurround>| -> [String; 2] {
        match c {
            Some(c) => [std_cell(c.centre_std), std_cell(c.surround_std)],
            None => [MISSING.into(), MISSING.into()],
        }
    };
    for r in with {
        let Some(k) = &r.kernel_stats else { continue };
        let _ = writeln!(
            out,
            "### {} ({} {}, `{}`)\n",
            r.id(),
            k.kind,
            k.variant,
            k.weights
        );
        let rows: Vec<Vec<String>> = k
            .layers
            .iter()
            .map(|l| {
                let [tc, ts] = cs(l.train.as_ref());
                let [fc, fs] = cs(l.bn_fused.as_ref());
                let [mc, ms] = cs(Some(&l.merged));
                vec![
                    l.layer.clone(),
                    format!("{}x{}", l.out_channels, l.in_channels),
                    tc,
                    ts,
                    fc,
                    fs,
                    mc,
                    ms,
                    format!("{:.2}", l.merged.ratio()),
                ]
            })
            .collect();
        out.push_str(&md_table(
            &[
                "layer",
                "out x in",
                "trained c",
                "trained s",
                "BN-fused c",
                "BN-fused s",
                "merged c",
                "merged s",
                "merged c/s",
            ],
            &rows,
        ));
        let [t, f, m] = k.mean_ratios();
        let show = |v: Option<f64>| v.map_or(MISSING.into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "\nMean c/s over layers: trained {}, BN-fused {}, merged {}.\n",
            show(t),
            show(f),
            show(m)
        );
    }
}

fn notes_section(out: &mut String, runs: &[RunData]) {
    if runs.iter().all(|r| r.notes.is_empty()) {
        return;
    }
    let _ = writeln!(out, "## Notes\n");
    for r in runs {
        for n in &r.notes {
            let _ = writeln!(out, "- `{}`: {n}", r.id());
        }
    }
    out.push('\n');
}

/// A change in points with its sign, the minus as the typographic one: "−0.16", "+0.02".
fn signed_points(change: f64) -> String {
    let sign = if change < 0.0 { '−' } else { '+' };
    format!("{sign}{:.2}", change.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_carry_one_sign() {
        assert_eq!(signed_points(-2.5), "−2.50");
        assert_eq!(signed_points(0.02), "+0.02");
        assert_eq!(signed_points(0.0), "+0.00");
    }

    #[test]
    fn cells_escape_pipes_and_line_breaks() {
        let t = md_table(&["a", "b"], &[vec!["x|y".into(), "1\n2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| x\\|y | 1 2 |\n");
    }

    #[test]
    fn numbers_and_missing_values() {
        assert_eq!(pct(Some(71.234)), "71.23");
        assert_eq!(pct(None), MISSING);
        assert_eq!(pct(Some(f64::NAN)), MISSING);
        assert_eq!(std_cell(0.035123), "0.0351");
        assert_eq!(std_cell(0.00012), "1.200e-4");
    }
}
