//! The runs view's INT8 section: the newest `quantize` event of a run, as `repopt-tui quantize`
//! writes it into `events.jsonl`, shown in the run's details.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use repopt_tui::tui::{App, AppConfig, Collector, GpuSource, Store, ui};

/// An older quantization of the same run, superseded by [`QUANTIZE`].
const OLDER_QUANTIZE: &str = r#"{"t":1795163000.0,"kind":"quantize","weights":"ckpt/e0005-i000000500.ckpt","model":"target","variant":"B1","calibration_images":64,"percentile":99.9,"fp32_top1":55.55,"schemes":[{"weights":"per-tensor","activations":"min/max","keep_float":"none","top1":44.44,"drop":11.11}],"layers":[]}"#;

/// Six schemes; the best is per-channel · p99.99 · none (69.02). Two keep layers in float, so
/// their label is the longest and the one cut on a narrow terminal.
const QUANTIZE: &str = r#"{"t":1795164000.0,"kind":"quantize","weights":"ckpt/e0006-i000000600.ckpt","model":"target","variant":"B1","calibration_images":256,"percentile":99.99,"fp32_top1":69.21,"schemes":[
{"weights":"per-channel","activations":"min/max","keep_float":"none","top1":68.87,"drop":0.34},
{"weights":"per-channel","activations":"p99.99","keep_float":"none","top1":69.02,"drop":0.19},
{"weights":"per-tensor","activations":"min/max","keep_float":"none","top1":61.45,"drop":7.76},
{"weights":"per-tensor","activations":"p99.99","keep_float":"none","top1":64.1,"drop":5.11},
{"weights":"per-channel","activations":"min/max","keep_float":"first-and-linear","top1":68.95,"drop":0.26},
{"weights":"per-tensor","activations":"p99.99","keep_float":"first-and-linear","top1":66.3,"drop":2.91}],
"layers":[{"name":"stage0","range_over_std":9.5,"error_per_tensor":0.01,"error_per_channel":0.004}]}"#;

/// The finished target fixture run alone in a runs directory, with `extra` lines appended to its
/// `events.jsonl` by hand (as another process would), and an app selecting it.
fn app_with(extra: &[&str]) -> (tempfile::TempDir, App) {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    let profiles = tmp.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let dir = write_run(&runs, TARGET_ID, &target_events());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("events.jsonl"))
        .unwrap();
    for line in extra {
        // One event per line, as the schema requires.
        writeln!(f, "{}", line.replace('\n', "")).unwrap();
    }
    drop(f);
    let store = load(&runs, &profiles);
    let mut app = App::new(
        store,
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    app.freeze_clock(1_795_165_000.0);
    app.selected = Some(TARGET_ID.to_string());
    (tmp, app)
}

fn load(runs: &Path, profiles: &Path) -> Arc<Mutex<Store>> {
    let store = Arc::new(Mutex::new(Store::new(runs, profiles)));
    let mut c = Collector::new(runs, profiles, GpuSource::Off);
    c.poll_until_loaded(&store);
    store
}

fn draw(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render(app, f)).unwrap();
    t
}

/// The screen's rows, trailing spaces trimmed.
fn rows(t: &Terminal<TestBackend>) -> Vec<String> {
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

fn row_with<'a>(rows: &'a [String], needle: &str) -> &'a str {
    rows.iter()
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?} in\n{}", rows.join("\n")))
}

#[test]
fn int8_section_shows_the_newest_quantize_figures_and_marks_the_best_scheme() {
    let (_tmp, mut app) = app_with(&[OLDER_QUANTIZE, QUANTIZE]);
    let t = draw(&mut app, 120, 30);
    let rows = rows(&t);
    let screen = rows.join("\n");

    let header = row_with(&rows, "INT8");
    assert!(
        header.contains(
            "INT8 · FP32 top-1 69.21 · ckpt/e0006-i000000600.ckpt · 256 calibration images"
        ),
        "{header}"
    );
    // The older event is superseded entirely.
    assert!(!screen.contains("55.55"), "{screen}");
    assert!(!screen.contains("44.44"), "{screen}");

    // One row per scheme: weights · calibration · kept in float → INT8 top-1, drop.
    for (label, figures) in [
        ("per-channel · min/max · none", "→ 68.87  drop 0.34"),
        ("per-channel · p99.99  · none", "→ 69.02  drop 0.19"),
        ("per-tensor  · min/max · none", "→ 61.45  drop 7.76"),
        ("per-tensor  · p99.99  · none", "→ 64.10  drop 5.11"),
        (
            "per-channel · min/max · first-and-linear",
            "→ 68.95  drop 0.26",
        ),
        (
            "per-tensor  · p99.99  · first-and-linear",
            "→ 66.30  drop 2.91",
        ),
    ] {
        let row = row_with(&rows, figures);
        assert!(row.contains(label), "{label:?} not in {row:?}");
    }
    // Exactly one best, on the highest INT8 top-1, and it is bold green.
    assert_eq!(screen.matches("◀ best").count(), 1, "{screen}");
    let best = row_with(&rows, "◀ best");
    assert!(
        best.contains("per-channel · p99.99  · none") && best.contains("→ 69.02  drop 0.19"),
        "{best}"
    );
    let y = rows.iter().position(|r| r.contains("◀ best")).unwrap() as u16;
    let x = rows[y as usize].chars().position(|c| c == '◀').unwrap() as u16;
    let cell = &t.backend().buffer()[(x, y)];
    assert_eq!(cell.fg, Color::Green);
    assert!(cell.modifier.contains(Modifier::BOLD));
    // The section sits right below the run's own top-1 figures.
    let metrics = rows.iter().position(|r| r.contains("best 69.24")).unwrap();
    let int8 = rows.iter().position(|r| r.contains("INT8 ·")).unwrap();
    assert_eq!(int8, metrics + 1, "{screen}");
}

#[test]
fn a_run_without_a_quantize_event_has_no_int8_section() {
    let (_tmp, mut app) = app_with(&[]);
    let screen = rows(&draw(&mut app, 120, 30)).join("\n");
    // The details are drawn (the run's own figures), with nothing about INT8.
    assert!(screen.contains("finished: best top-1 69.24%"), "{screen}");
    assert!(!screen.contains("INT8"), "{screen}");
    assert!(!screen.contains("FP32"), "{screen}");
    assert!(!screen.contains("→"), "{screen}");
}

#[test]
fn a_narrow_terminal_cuts_scheme_names_but_keeps_the_figures() {
    let (_tmp, mut app) = app_with(&[QUANTIZE]);
    for (w, h) in [
        (1, 1),
        (20, 5),
        (59, 14),
        (60, 15),
        (61, 16),
        (70, 8),
        (300, 8),
    ] {
        draw(&mut app, w, h);
    }
    let t = draw(&mut app, 60, 24);
    let rows = rows(&t);
    let screen = rows.join("\n");
    assert!(
        row_with(&rows, "INT8").contains("INT8 · FP32 top-1 69.21"),
        "{screen}"
    );
    // Every figure is on screen, each scheme on one row within the panel's border.
    for figures in [
        "→ 68.87  drop 0.34",
        "→ 69.02  drop 0.19 ◀ best",
        "→ 61.45  drop 7.76",
        "→ 64.10  drop 5.11",
        "→ 68.95  drop 0.26",
        "→ 66.30  drop 2.91",
    ] {
        let row = row_with(&rows, figures);
        assert!(row.ends_with('│'), "{row:?} runs into the border");
    }
    // The longest names (kept layers) are cut with an ellipsis, the short ones are whole.
    let cut = row_with(&rows, "→ 68.95");
    assert!(
        cut.contains('…') && !cut.contains("first-and-linear"),
        "{cut}"
    );
    for short in ["→ 68.87", "→ 69.02", "→ 61.45", "→ 64.10"] {
        let row = row_with(&rows, short);
        assert!(row.contains(" · none ") && !row.contains('…'), "{row}");
    }
    assert!(row_with(&rows, "→ 69.02").contains("per-channel · p99.99  · none"));
    // Figures stay in one column.
    let arrows: Vec<usize> = rows
        .iter()
        .filter_map(|r| r.find("→ ").map(|b| r[..b].chars().count()))
        .collect();
    assert_eq!(arrows.len(), 6, "{screen}");
    assert!(arrows.iter().all(|&a| a == arrows[0]), "{screen}");
}
