//! `repopt-tui report` end to end: run directories written by hand (so every number in the
//! Markdown is known), the report checked cell by cell, every chart parsed as XML; bad inputs
//! give errors that name the path; the run directories are never written to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use repopt_tui::model::kernel_stats::{CentreSurround, KernelStatsReport, LayerKernelStats};
use repopt_tui::rundir::events::*;

use crate::common::runs::{bin, run};
use crate::common::{ev, eval, hs_scales, started, step, write_run};

const HS: &str = "hs-a0-20261201-100000";
const TARGET: &str = "target-a0-20261201-110000";
const NO_EVAL: &str = "sgd-a0-20261201-120000";
const PROBE: &str = "probe-a0-20261201-130000";

fn finished(epochs: u32, t: f64) -> Event {
    ev(
        t,
        EventBody::Finished(Finished {
            epochs,
            best_top1: None,
            final_top1: None,
            wall_s: 60.0,
        }),
    )
}

/// An HS run: images/s 100, 400, 200 (median 200, mean 233.3); top-1 10, 30, 25 (best 30, final 25);
/// scales after each epoch.
fn hs_run(runs: &Path) -> PathBuf {
    let ipe = 10;
    let mut e = vec![ev(1000.0, started(HS, "hyper_search", "A0", 3, ipe))];
    for (epoch, (ips, top1)) in [(100.0, 10.0), (400.0, 30.0), (200.0, 25.0)]
        .into_iter()
        .enumerate()
    {
        let epoch = epoch as u32;
        let t = 1001.0 + 10.0 * epoch as f64;
        e.push(ev(t, step(epoch, 5, ipe, 4.0 - epoch as f64, 0.1, ips)));
        e.push(ev(t + 1.0, eval(epoch, 3.0, top1, top1 + 20.0)));
        e.push(ev(t + 2.0, EventBody::Scales(hs_scales(epoch))));
    }
    e.push(finished(3, 1040.0));
    write_run(runs, HS, &e)
}

/// A Target run resumed after epoch 0: the abandoned epoch-1 eval (60) is replaced by the
/// resumed one (55.5). Images/s 50, 70 (median 60). Quantized with two schemes; kernel
/// statistics for two layers.
fn target_run(runs: &Path) -> PathBuf {
    let ipe = 4;
    let e = vec![
        ev(2000.0, started(TARGET, "target", "A0", 2, ipe)),
        ev(2001.0, step(0, 2, ipe, 3.0, 0.1, 50.0)),
        ev(2002.0, eval(0, 2.5, 40.0, 70.0)),
        ev(2003.0, eval(1, 2.0, 60.0, 80.0)),
        ev(2010.0, started(TARGET, "target", "A0", 2, ipe)),
        ev(2011.0, step(1, 2, ipe, 2.0, 0.05, 70.0)),
        ev(2012.0, eval(1, 2.0, 55.5, 80.0)),
        finished(2, 2013.0),
        ev(
            2020.0,
            EventBody::Quantize(QuantizeEvent {
                weights: "ckpt/best.ckpt".into(),
                model: "target".into(),
                variant: "A0".into(),
                calibration_images: 256,
                percentile: 99.99,
                fp32_top1: 55.5,
                schemes: vec![
                    QuantizeScheme {
                        weights: "per-channel".into(),
                        activations: "min/max".into(),
                        keep_float: "none".into(),
                        top1: 53.0,
                        drop: 2.5,
                    },
                    QuantizeScheme {
                        weights: "per-tensor".into(),
                        activations: "p99.99".into(),
                        keep_float: "first-and-linear".into(),
                        top1: 50.25,
                        drop: 5.25,
                    },
                ],
                layers: ["stage0", "stage1.0", "linear"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| QuantizeLayer {
                        name: n.to_string(),
                        range_over_std: 6.0 + i as f64,
                        error_per_tensor: 0.01,
                        error_per_channel: 0.005,
                    })
                    .collect(),
            }),
        ),
    ];
    let dir = write_run(runs, TARGET, &e);
    let cs = |c, s| CentreSurround {
        centre_std: c,
        surround_std: s,
    };
    let stats = KernelStatsReport {
        weights: "model.safetensors".into(),
        kind: "target".into(),
        variant: "A0".into(),
        layers: vec![
            LayerKernelStats {
                layer: "stage0".into(),
                out_channels: 48,
                in_channels: 3,
                train: Some(cs(0.5, 0.25)),
                bn_fused: Some(cs(0.75, 0.5)),
                merged: cs(0.9, 0.3),
            },
            LayerKernelStats {
                layer: "stage1.0".into(),
                out_channels: 48,
                in_channels: 48,
                train: Some(cs(0.125, 0.125)),
                bn_fused: Some(cs(0.25, 0.125)),
                merged: cs(0.25, 0.125),
            },
        ],
    };
    std::fs::write(
        dir.join("kernel_stats.json"),
        serde_json::to_string(&stats).unwrap(),
    )
    .unwrap();
    dir
}

/// An ablation run interrupted in its first epoch: steps, no eval.
fn no_eval_run(runs: &Path) -> PathBuf {
    let e = vec![
        ev(3000.0, started(NO_EVAL, "ablation", "A0", 5, 10)),
        ev(3001.0, step(0, 0, 10, 4.5, 0.1, 80.0)),
        ev(3002.0, step(0, 5, 10, 4.0, 0.1, 90.0)),
    ];
    write_run(runs, NO_EVAL, &e)
}

/// A probe directory: RepOpt-VGG (target) A0 on the CPU under an 11 GiB budget.
fn probe_dir(runs: &Path) -> PathBuf {
    let p = ProbeResult {
        model: "target".into(),
        variant: "A0".into(),
        resolution: 32,
        device: "cpu".into(),
        memory_limit_bytes: Some(11 << 30),
        max_batch: Some(96),
        peak_bytes: Some(3 << 30),
        images_per_s_at_32: Some(120.0),
        images_per_s_at_max: Some(150.0),
        max_batch_ceiling: Some(4096),
    };
    write_run(runs, PROBE, &[ev(4000.0, EventBody::Probe(p))])
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(snapshot(&entry.path()));
        } else {
            out.insert(entry.path(), std::fs::read(entry.path()).unwrap());
        }
    }
    out
}

/// The cells of the first table row of `md` whose first cell is `first`.
fn row<'a>(md: &'a str, first: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row for {first} in\n{md}"));
    line.trim_matches('|').split(" | ").map(str::trim).collect()
}

/// A data line or its legend sample in a chart.
fn is_series(n: &roxmltree::Node) -> bool {
    n.has_tag_name("polyline")
        && n.attribute("stroke-width") == Some("2")
        && n.attribute("stroke") != Some("#000000")
}

fn report(args: &[&Path], out: &Path) -> std::process::Output {
    let mut cmd = bin();
    cmd.arg("report").args(args).arg("-o").arg(out);
    cmd.output().unwrap()
}

#[test]
fn report_shows_hand_known_numbers_and_valid_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let dirs = [
        hs_run(&runs),
        target_run(&runs),
        no_eval_run(&runs),
        probe_dir(&runs),
    ];
    let before = snapshot(&runs);
    let out_dir = tmp.path().join("report");
    let mut args: Vec<&str> = vec!["report"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    args.extend(["-o", out_dir.to_str().unwrap()]);
    let out = run(&args);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The run without evals is reported, and named on stderr with what is missing.
    assert!(
        stderr.contains(NO_EVAL) && stderr.contains("no eval events"),
        "{stderr}"
    );
    assert_eq!(
        snapshot(&runs),
        before,
        "the run directories were written to"
    );

    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    // run | kind | variant | status | epochs | best | final | img/s | MaxBS | FP32 | best INT8
    assert_eq!(
        row(&md, HS),
        [
            HS, "HS", "A0", "finished", "3/3", "30.00", "25.00", "200.0", "–", "–", "–"
        ]
    );
    assert_eq!(
        row(&md, TARGET),
        [
            TARGET,
            "RepOpt",
            "A0",
            "finished",
            "2/2",
            "55.50",
            "55.50",
            "60.0",
            "96 (32 px, cpu, 11.00 GiB)",
            "55.50",
            "53.00 (−2.50)"
        ]
    );
    assert_eq!(
        row(&md, NO_EVAL),
        [
            NO_EVAL,
            "ablation",
            "A0",
            "interrupted",
            "0/5",
            "–",
            "–",
            "85.0",
            // An ablation trains the same plain model as RepOpt: the target probe applies.
            "96 (32 px, cpu, 11.00 GiB)",
            "–",
            "–"
        ]
    );
    // The probe directory has no row of its own in the runs table, only in the probes table.
    assert_eq!(
        row(&md, PROBE),
        [
            PROBE,
            "target",
            "A0",
            "32 px, cpu, 11.00 GiB",
            "96",
            "3.00 GiB",
            "120.0",
            "150.0"
        ]
    );
    assert_eq!(md.matches(&format!("| {PROBE} |")).count(), 1, "{md}");
    // INT8 per scheme.
    assert!(
        md.contains(&format!(
            "| {TARGET} | 55.50 | per-channel | min/max | none | 53.00 | 2.50 |"
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| {TARGET} | 55.50 | per-tensor | p99.99 | first-and-linear | 50.25 | 5.25 |"
        )),
        "{md}"
    );
    // Switches of the Target run (the frozen profile's defaults) and of the ablation.
    assert!(
        md.contains(&format!(
            "| {TARGET} | `profiles/scales/b1.ron` | no | yes | yes | Trained |"
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| {NO_EVAL} | none (plain SGD) | no | no | no | – |"
        )),
        "{md}"
    );
    // Table 11, and its mean c/s: (0.9/0.3 + 0.25/0.125) / 2 = 2.5 merged, (2 + 1) / 2 trained.
    assert_eq!(
        row(&md, "stage0"),
        [
            "stage0", "48x3", "0.5000", "0.2500", "0.7500", "0.5000", "0.9000", "0.3000", "3.00"
        ]
    );
    assert!(
        md.contains("Mean c/s over layers: trained 1.50, BN-fused 1.75, merged 2.50."),
        "{md}"
    );
    assert!(md.contains("no eval events"), "{md}");

    // Every image the Markdown references exists, is SVG, and draws a line per run it shows.
    let images: Vec<&str> = md
        .match_indices("](")
        .map(|(i, _)| {
            let rest = &md[i + 2..];
            &rest[..rest.find(')').unwrap()]
        })
        .collect();
    assert_eq!(
        images,
        [
            "curves.svg",
            "scales_history.svg",
            "scales_blocks.svg",
            "kernels.svg"
        ]
    );
    for (image, ids, lines) in [
        // Loss: 3 runs with steps; top-1: 2 runs with evals.
        ("curves.svg", vec![HS, TARGET, NO_EVAL], 5),
        // s, t, u of the one HS run.
        ("scales_history.svg", vec![HS], 3),
        ("scales_blocks.svg", vec![HS], 3),
        // Merged centre and surround std, range / std.
        ("kernels.svg", vec![TARGET], 3),
    ] {
        let text = std::fs::read_to_string(out_dir.join(image)).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{image} is not XML: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg", "{image}");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for id in ids {
            assert!(
                texts.iter().any(|t| t.starts_with(id)),
                "{image} has no legend for {id}: {texts:?}"
            );
        }
        // A series is one coloured <polyline> of width 2, and so is its legend sample (the axes
        // and ticks are black polylines of width 1).
        let polylines = doc.descendants().filter(|n| is_series(n)).count();
        assert_eq!(polylines, 2 * lines, "{image}");
    }
}

#[test]
fn report_charts_plot_the_runs_values() {
    // One HS run: the top-1 line of curves.svg passes through its three evals; the y axis is
    // labelled around them.
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let hs = hs_run(&runs);
    let out_dir = tmp.path().join("r");
    let out = report(&[&hs], &out_dir);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(out_dir.join("curves.svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let lines: Vec<Vec<(f64, f64)>> = doc
        .descendants()
        .filter(is_series)
        .map(|n| {
            n.attribute("points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect();
    // Loss (3 steps) and top-1 (3 evals), each with its 2-point legend sample.
    let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().filter(|&&n| n == 3).count(), 2, "{sizes:?}");
    // In SVG y grows downwards: top-1 10, 30, 25 goes up, then a little down the picture; loss
    // 4, 3, 2 (one step per epoch) goes steadily down it.
    let top1 = lines
        .iter()
        .filter(|l| l.len() == 3)
        .find(|l| l[1].1 < l[0].1)
        .expect("the top-1 line");
    assert!(top1[1].1 < top1[0].1 && top1[2].1 < top1[0].1, "{top1:?}");
    // 25 sits a quarter of the way down from 30 towards 10.
    let frac = (top1[2].1 - top1[1].1) / (top1[0].1 - top1[1].1);
    assert!((frac - 0.25).abs() < 0.02, "{frac}");
}

#[test]
fn report_bad_inputs_name_the_path_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let hs = hs_run(&runs);
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let out_dir = tmp.path().join("out");

    // Not a run directory.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let out = report(&[&hs, &plain], &out_dir);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "{}: not a run directory (no events.jsonl)",
            plain.display()
        )) && e.contains("checkpoints/<run-id>"),
        "{e}"
    );
    assert!(!out_dir.join("report.md").exists());

    // The folder of runs rather than the runs.
    let e = stderr(&report(&[&runs], &out_dir));
    assert!(
        e.contains(&format!(
            "{}: not a run directory but a folder of runs: give the runs themselves, e.g. {}/*",
            runs.display(),
            runs.display()
        )),
        "{e}"
    );

    // Missing.
    let gone = tmp.path().join("gone");
    let e = stderr(&report(&[&gone], &out_dir));
    assert!(
        e.contains(&format!("{}: no such directory", gone.display())),
        "{e}"
    );

    // A run that has written nothing yet.
    let empty = runs.join("empty-20261201-000000");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("events.jsonl"), "").unwrap();
    let e = stderr(&report(&[&empty], &out_dir));
    assert!(
        e.contains(&format!("{}: the run has no events yet", empty.display()))
            && e.contains("report it once it has started"),
        "{e}"
    );

    // Nothing but lines this version cannot read.
    std::fs::write(empty.join("events.jsonl"), "not an event\n{\"t\": 1}\n").unwrap();
    let e = stderr(&report(&[&empty], &out_dir));
    assert!(
        e.contains(&format!(
            "{}: no valid event in events.jsonl (2 unreadable lines)",
            empty.display()
        )),
        "{e}"
    );

    // -o under a regular file: cannot be created.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("sub");
    let out = report(&[&hs], &bad);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "-o {}: cannot create the directory",
            bad.display()
        )),
        "{e}"
    );
    // -o an existing file.
    let e = stderr(&report(&[&hs], &file));
    assert!(e.contains("exists and is not a directory"), "{e}");

    // -o inside a run directory: refused, the run untouched.
    let before = snapshot(&hs);
    let inside = hs.join("report");
    let out = report(&[&hs], &inside);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("is inside the run directory") && e.contains(&hs.display().to_string()),
        "{e}"
    );
    assert!(!inside.exists(), "a folder was made inside the run");
    assert_eq!(snapshot(&hs), before, "the run directory was written to");
}

/// A tiny synthetic profile (T0, 16x16) of `kind` with `extra` fields.
fn tiny_profile(dir: &Path, name: &str, kind: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: {kind},
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 64, synthetic_val: 32, synthetic_seed: 3),
    recipe: (
        epochs: 2, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.0,
        optimizer: Sgd(momentum: 0.9, nesterov: true),
        weight_decay: 4e-5, label_smoothing: 0.1, augment: CifarStandard, workers: 1,
    ),
    devices: [Cpu],
    log_every: 1,
    seed: 5,
    {extra}
)"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn report_of_runs_the_binary_trained_and_quantized() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let hs = tiny_profile(tmp.path(), "hs", "HyperSearch", "");
    let target = tiny_profile(
        tmp.path(),
        "target",
        "Target",
        r#"scales: "run:hs", modify_gradients: false,"#,
    );
    for (p, id) in [(&hs, "hs"), (&target, "target")] {
        let out = run(&[
            "--profile",
            p.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            id,
        ]);
        assert!(out.status.success());
    }
    let out = run(&[
        "quantize",
        "--profile",
        target.to_str().unwrap(),
        "--weights",
        runs.join("target").to_str().unwrap(),
        "--calibration-images",
        "32",
        "--keep-float",
        "none",
    ]);
    assert!(out.status.success());
    let out_dir = tmp.path().join("report");
    let out = report(&[&runs.join("hs"), &runs.join("target")], &out_dir);
    assert!(out.status.success(), "{out:?}");
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();

    // The numbers the run directories hold, read independently of the report.
    for id in ["hs", "target"] {
        let events = crate::common::runs::events(&runs.join(id));
        let top1: Vec<f64> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Eval(v) => Some(v.top1),
                _ => None,
            })
            .collect();
        let mut ips: Vec<f64> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Step(s) => Some(s.images_per_s),
                _ => None,
            })
            .collect();
        ips.sort_by(f64::total_cmp);
        // 64 images in batches of 16, logged every step: 8 steps, an even count.
        assert_eq!(ips.len(), 8);
        let median = (ips[3] + ips[4]) / 2.0;
        let r = row(&md, id);
        assert_eq!(r[3], "finished");
        assert_eq!(r[4], "2/2");
        assert_eq!(
            r[5],
            format!("{:.2}", top1.iter().copied().reduce(f64::max).unwrap())
        );
        assert_eq!(r[6], format!("{:.2}", top1[1]));
        assert_eq!(r[7], format!("{median:.1}"));
        if id == "target" {
            let q = events
                .iter()
                .find_map(|e| match &e.body {
                    EventBody::Quantize(q) => Some(q.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(r[9], format!("{:.2}", q.fp32_top1));
            // Per-channel and per-tensor weights, each with two calibrations.
            assert_eq!(q.schemes.len(), 4);
            for s in &q.schemes {
                let line = format!(
                    "| target | {:.2} | {} | {} | {} | {:.2} | {:.2} |",
                    q.fp32_top1, s.weights, s.activations, s.keep_float, s.top1, s.drop
                );
                assert!(md.contains(&line), "{line} not in\n{md}");
            }
        }
    }
    // The Target run's switches, from its frozen profile.
    let r = row(&md, "target");
    assert_eq!(r[1], "RepOpt");
    let switches = md
        .lines()
        .find(|l| l.starts_with("| target | `"))
        .unwrap_or_else(|| panic!("no switches row in\n{md}"));
    assert!(
        switches.ends_with("scales.ron` | no | yes | no | Trained |"),
        "{switches}"
    );
    // Table 11 from the run's kernel_stats.json: a row per layer and the mean ratio.
    let stats: KernelStatsReport =
        serde_json::from_slice(&std::fs::read(runs.join("target/kernel_stats.json")).unwrap())
            .unwrap();
    // (The HS run has its own table first: the Target run's is the one under its heading.)
    let section = &md[md.find("### target (target T0").expect("target's Table 11")..];
    for l in &stats.layers {
        assert_eq!(
            row(section, &l.layer)[8],
            format!("{:.2}", l.merged.ratio())
        );
    }
    assert!(md.contains("### hs (hs T0"), "{md}");
    let merged = stats.mean_ratios()[2].unwrap();
    assert!(md.contains(&format!("merged {merged:.2}.")), "{md}");
    for chart in [
        "curves.svg",
        "scales_history.svg",
        "scales_blocks.svg",
        "kernels.svg",
    ] {
        let text = std::fs::read_to_string(out_dir.join(chart)).unwrap();
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(
            md.contains(&format!("]({chart})")),
            "{chart} not referenced"
        );
    }
}
