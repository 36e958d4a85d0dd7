//! Shared helpers of the integration tests: test data lookup, numeric comparison, and for the
//! `rundir_*` and `tui_*` tests event builders and the generator of the
//! fixture run directories under `tests/fixtures/runs/` (committed; `fixtures_match_generator`
//! checks they are what this code writes, `regenerate_fixtures` rewrites them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod pty;
pub mod runs;

use repopt_tui::rundir::EventWriter;
use repopt_tui::rundir::events::*;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture_runs() -> PathBuf {
    fixtures_dir().join("runs")
}

pub fn fixture_profiles() -> PathBuf {
    fixtures_dir().join("profiles")
}

/// Copies a directory tree (fixtures into a temporary directory the test may modify).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn ev(t: f64, body: EventBody) -> Event {
    Event { t, body }
}

pub fn started(run_id: &str, kind: &str, variant: &str, epochs: u32, ipe: u64) -> EventBody {
    EventBody::Started(Started {
        run_id: run_id.into(),
        run_kind: kind.into(),
        variant: variant.into(),
        dataset: if kind == "hyper_search" {
            "cifar100:datasets/cifar-100-binary".into()
        } else {
            "imagenet:/data/imagenet".into()
        },
        epochs,
        iters_per_epoch: ipe,
        batch_size: if kind == "hyper_search" { 64 } else { 32 },
        devices: if kind == "hyper_search" {
            vec!["cpu".into()]
        } else {
            vec!["cuda:0".into(), "cuda:1".into()]
        },
        pid: 4242,
        resumed_from: None,
        profile_path: Some(format!(
            "profiles/{}.ron",
            run_id.rsplitn(3, '-').nth(2).unwrap_or(run_id)
        )),
        nodes: None,
    })
}

pub fn step(epoch: u32, iter: u64, ipe: u64, loss: f64, lr: f64, ips: f64) -> EventBody {
    EventBody::Step(Step {
        epoch,
        iter,
        global_iter: epoch as u64 * ipe + iter,
        loss,
        lr,
        images_per_s: ips,
        top1: None,
        eta_s: None,
        rank_images_per_s: None,
        all_reduce_ms: None,
    })
}

pub fn eval(epoch: u32, loss: f64, top1: f64, top5: f64) -> EventBody {
    EventBody::Eval(Eval {
        epoch,
        loss,
        top1,
        top5,
        train_loss: Some(loss * 0.9),
        train_top1: Some(top1 + 3.0),
    })
}

/// A checkpoint after `epoch` completed epochs (the schema's meaning), at `global_iter`.
pub fn checkpoint(epoch: u32, global_iter: u64, best: bool) -> EventBody {
    EventBody::Checkpoint(CheckpointEvent {
        epoch,
        global_iter,
        path: ckpt_name(epoch, global_iter),
        best,
    })
}

pub fn ckpt_name(epoch: u32, global_iter: u64) -> String {
    format!("ckpt/e{epoch:04}-i{global_iter:09}.ckpt")
}

/// A deterministic pseudo-random number in [0, 1) (splitmix64 of a seed).
pub fn rnd(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

pub fn stats(values: &[f64], bins: usize) -> ScaleStats {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut counts = vec![0u32; bins];
    for v in values {
        let i = if max > min {
            (((v - min) / (max - min)) * bins as f64) as usize
        } else {
            0
        };
        counts[i.min(bins - 1)] += 1;
    }
    ScaleStats {
        mean,
        std,
        min,
        max,
        negative: values.iter().filter(|v| **v < 0.0).count(),
        hist: Histogram {
            lo: min,
            hi: max,
            counts,
        },
    }
}

/// Block names of RepOpt-VGG-A0 ([2, 4, 14, 1] blocks per stage after stage0), in forward order.
pub fn a0_blocks() -> Vec<(String, bool)> {
    let mut out = vec![("stage0".to_string(), false)];
    for (stage, n) in [(1, 2), (2, 4), (3, 14), (4, 1)] {
        for i in 0..n {
            out.push((format!("stage{stage}.{i}"), i > 0));
        }
    }
    out
}

/// Per-layer scales of a made-up HS search after `epoch` epochs: s drifts from its init
/// (sqrt(2/i)) down, t shrinks, u (identity blocks) grows, spread widens with training.
pub fn hs_scales(epoch: u32) -> ScalesEvent {
    let mut layers = Vec::new();
    for (li, (name, identity)) in a0_blocks().into_iter().enumerate() {
        let index_in_stage: f64 = name
            .split('.')
            .nth(1)
            .and_then(|i| i.parse().ok())
            .unwrap_or(0.0);
        let init = if index_in_stage == 0.0 {
            1.0
        } else {
            (2.0 / index_in_stage).sqrt()
        };
        let channels = 48;
        let spread = 0.05 + 0.05 * epoch as f64;
        let make = |k: u64, centre: f64| -> Vec<f64> {
            (0..channels)
                .map(|c| {
                    let r = rnd(k * 1_000_003 + li as u64 * 1009 + c as u64 + epoch as u64 * 7)
                        + rnd(k * 7_919 + li as u64 * 31 + c as u64 * 3 + epoch as u64);
                    centre + (r - 1.0) * spread * 2.0
                })
                .collect()
        };
        let drift = 0.06 * epoch as f64;
        let s = make(1, init - drift * (li as f64 / 22.0));
        let t = make(2, init * 0.8 - drift);
        let u = identity.then(|| make(3, 1.0 + drift * (li as f64 / 22.0)));
        layers.push(LayerScales {
            name,
            s: stats(&s, 16),
            t: stats(&t, 16),
            u: u.map(|u| stats(&u, 16)),
        });
    }
    ScalesEvent { epoch, layers }
}

fn gpu(t_index: u64) -> EventBody {
    EventBody::Gpu(GpuSample {
        devices: (0..2)
            .map(|i| GpuDeviceSample {
                index: i,
                name: "NVIDIA A100-SXM4-80GB".into(),
                memory_used_bytes: 61_000_000_000 + (t_index % 7) * 100_000_000,
                memory_total_bytes: 85_899_345_920,
                utilization: Some(95 - (t_index % 5) as u32),
                temperature_c: Some(63 + i),
                power_w: Some(310.5),
                process_memory_bytes: Some(60_500_000_000),
            })
            .collect(),
    })
}

/// The loss of a made-up training curve at fractional epoch `x` (noisy, decreasing).
fn loss_at(x: f64, start: f64, end: f64, seed: u64) -> f64 {
    let clean = end + (start - end) * (-x / 1.5).exp();
    clean * (1.0 + 0.15 * (rnd(seed) - 0.5))
}

pub const T_HS: f64 = 1_795_860_900.0; // 2026-11-28 10:15:00 UTC
pub const T_TARGET: f64 = 1_795_161_600.0; // 2026-11-20 08:00:00 UTC
pub const T_REPVGG: f64 = 1_795_251_600.0; // 2026-11-21 09:00:00 UTC
pub const T_ABLATION: f64 = 1_795_348_800.0; // 2026-11-22 12:00:00 UTC
pub const T_PROBE: f64 = 1_795_442_400.0; // 2026-11-23 14:00:00 UTC

pub const HS_ID: &str = "demo-hs-20261128-101500";
pub const TARGET_ID: &str = "b1-target-20261120-080000";
pub const REPVGG_ID: &str = "b1-repvgg-20261121-090000";
pub const ABLATION_ID: &str = "a0-sgd-20261122-120000";
pub const PROBE_ID: &str = "b1-probe-20261123-140000";

/// The time of the last event of the live HS fixture (snapshot tests set "now" from it).
pub fn hs_last_t() -> f64 {
    hs_events().last().unwrap().t
}

/// The HS run: 4 epochs of 50 iterations, in epoch 2 (no terminal event: live when a test holds
/// its lock, interrupted otherwise), scales after epochs 0 and 1.
pub fn hs_events() -> Vec<Event> {
    let ipe = 50;
    let mut out = vec![ev(T_HS, started(HS_ID, "hyper_search", "A0", 4, ipe))];
    let mut t = T_HS + 2.0;
    for epoch in 0..3u32 {
        let iters = if epoch == 2 { 30 } else { ipe };
        for iter in (0..iters).step_by(5) {
            let x = epoch as f64 + iter as f64 / ipe as f64;
            let g = epoch as u64 * ipe + iter;
            let lr = 0.1 * 0.5 * (1.0 + (std::f64::consts::PI * x / 4.0).cos());
            let ips = 410.0 + 30.0 * rnd(g + 99);
            out.push(ev(
                t,
                step(epoch, iter, ipe, loss_at(x, 4.6, 2.0, g), lr, ips),
            ));
            t += 0.8;
        }
        if epoch < 2 {
            let top1 = 12.0 + 9.5 * epoch as f64;
            out.push(ev(
                t,
                eval(epoch, 3.9 - 0.5 * epoch as f64, top1, top1 + 22.0),
            ));
            out.push(ev(t + 0.1, EventBody::Scales(hs_scales(epoch))));
            let g = (epoch as u64 + 1) * ipe;
            out.push(ev(t + 0.2, checkpoint(epoch + 1, g, true)));
            t += 1.0;
        }
    }
    out
}

/// The finished target run: 6 epochs of 100 iterations on 2 GPUs, with GPU samples.
pub fn target_events() -> Vec<Event> {
    let ipe = 100;
    let mut out = vec![ev(T_TARGET, started(TARGET_ID, "target", "B1", 6, ipe))];
    let mut t = T_TARGET + 5.0;
    let mut best: f64 = 0.0;
    for epoch in 0..6u32 {
        for iter in (0..ipe).step_by(10) {
            let x = epoch as f64 + iter as f64 / ipe as f64;
            let g = epoch as u64 * ipe + iter;
            let lr = if x < 1.0 {
                0.2 * x
            } else {
                0.1 * (1.0 + (std::f64::consts::PI * (x - 1.0) / 5.0).cos())
            };
            let ips = 2_450.0 + 120.0 * rnd(g + 5);
            out.push(ev(
                t,
                step(epoch, iter, ipe, loss_at(x, 6.9, 1.1, g + 1000), lr, ips),
            ));
            if iter % 50 == 0 {
                out.push(ev(t + 0.05, gpu(g)));
            }
            t += 13.0;
        }
        let top1 = 71.0 - 40.0 * (-(epoch as f64) / 1.6).exp();
        best = best.max(top1);
        out.push(ev(
            t,
            eval(epoch, 2.9 - 0.28 * epoch as f64, top1, top1 + 18.5),
        ));
        out.push(ev(
            t + 1.0,
            checkpoint(epoch + 1, (epoch as u64 + 1) * ipe, top1 >= best),
        ));
        t += 20.0;
    }
    out.push(ev(
        t,
        EventBody::Finished(Finished {
            epochs: 6,
            best_top1: Some(best),
            final_top1: Some(best),
            wall_s: t - T_TARGET,
        }),
    ));
    out
}

/// The RepVGG baseline that ran out of GPU memory in epoch 1.
pub fn repvgg_events() -> Vec<Event> {
    let ipe = 100;
    let mut out = vec![ev(T_REPVGG, started(REPVGG_ID, "baseline", "B1", 120, ipe))];
    let mut t = T_REPVGG + 5.0;
    for g in (0..140u64).step_by(10) {
        let (epoch, iter) = ((g / ipe) as u32, g % ipe);
        let x = g as f64 / ipe as f64;
        out.push(ev(
            t,
            step(
                epoch,
                iter,
                ipe,
                loss_at(x, 6.9, 1.3, g + 77),
                0.02 * x,
                1_810.0,
            ),
        ));
        t += 17.0;
        if g == 90 {
            out.push(ev(t, eval(0, 5.2, 9.8, 25.3)));
            out.push(ev(t + 1.0, checkpoint(1, 100, true)));
        }
    }
    out.push(ev(
        t,
        EventBody::Failed(Failed {
            message: "CUDA out of memory: tried to allocate 2.00 GiB on cuda:1 (79.1 GiB of 80 GiB in use)".into(),
        }),
    ));
    out
}

/// A plain-SGD ablation stopped by SIGINT in epoch 1 (a checkpoint written on the way out).
pub fn ablation_events() -> Vec<Event> {
    let ipe = 40;
    let mut out = vec![ev(
        T_ABLATION,
        started(ABLATION_ID, "ablation", "A0", 10, ipe),
    )];
    let mut t = T_ABLATION + 3.0;
    for g in (0..60u64).step_by(4) {
        let (epoch, iter) = ((g / ipe) as u32, g % ipe);
        let x = g as f64 / ipe as f64;
        out.push(ev(
            t,
            step(epoch, iter, ipe, loss_at(x, 4.6, 2.6, g + 5), 0.1, 880.0),
        ));
        t += 2.0;
        if g == 36 {
            out.push(ev(t, eval(0, 4.1, 7.5, 23.0)));
        }
    }
    out.push(ev(t, checkpoint(1, 58, false)));
    out.push(ev(
        t + 0.5,
        EventBody::Stopped(Stopped {
            epoch: 1,
            global_iter: 58,
            reason: "SIGINT".into(),
            checkpoint: Some(ckpt_name(1, 58)),
        }),
    ));
    out
}

/// Max-batch-size probe results: RepOpt-VGG (target) vs RepVGG vs HS for B1 at 224 on one GPU.
pub fn probe_events() -> Vec<Event> {
    let probe = |model: &str, mb: Option<usize>, peak: Option<u64>, a: f64, b: f64| {
        EventBody::Probe(ProbeResult {
            model: model.into(),
            variant: "B1".into(),
            resolution: 224,
            device: "cuda:0".into(),
            memory_limit_bytes: None,
            max_batch: mb,
            peak_bytes: peak,
            images_per_s_at_32: Some(a),
            images_per_s_at_max: Some(b),
            max_batch_ceiling: Some(4096),
        })
    };
    vec![
        ev(
            T_PROBE,
            probe("target", Some(472), Some(78_900_000_000), 812.0, 1_204.0),
        ),
        ev(
            T_PROBE + 60.0,
            probe("repvgg", Some(198), Some(79_100_000_000), 540.0, 702.0),
        ),
        ev(
            T_PROBE + 120.0,
            probe("hs", Some(151), Some(78_400_000_000), 402.0, 455.0),
        ),
    ]
}

/// Writes `events` into `<runs>/<id>/events.jsonl` (through the real writer) plus checkpoint files.
pub fn write_run(runs: &Path, id: &str, events: &[Event]) -> PathBuf {
    let dir = runs.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join("events.jsonl"));
    let mut w = EventWriter::open(&dir).unwrap();
    for e in events {
        w.write(e).unwrap();
        match &e.body {
            EventBody::Checkpoint(c) => {
                let p = dir.join(&c.path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, format!("fake checkpoint {}\n", c.global_iter)).unwrap();
            }
            EventBody::Started(s) => {
                std::fs::write(dir.join("profile.ron"), frozen_profile(s)).unwrap();
            }
            _ => {}
        }
    }
    dir
}

/// The `profile.ron` a run of this `started` event freezes: a profile in the current schema,
/// parsed by the strict loader and written back as runs write it. Learning rate, weight decay
/// and data differ between the kinds, so the dashboard's columns and diffs have something to show.
pub fn frozen_profile(s: &Started) -> String {
    let (kind, lr, wd) = match s.run_kind.as_str() {
        "hyper_search" => ("HyperSearch", 0.1, 4e-5),
        "target" => ("Target", 0.1, 4e-5),
        "baseline" => ("Baseline", 0.1, 1e-4),
        _ => ("Ablation", 0.05, 4e-5),
    };
    let (data, augment) = if kind == "HyperSearch" {
        (
            r#"(kind: Cifar100, path: "datasets/cifar-100-binary", classes: 100, image_size: 32)"#,
            "CifarStandard",
        )
    } else {
        (
            r#"(kind: ImageFolder, path: "/data/imagenet", classes: 1000, image_size: 224)"#,
            "ImagenetRaug15",
        )
    };
    let devices: Vec<String> = s
        .devices
        .iter()
        .map(|d| match d.strip_prefix("cuda:") {
            Some(i) => format!("Cuda({i})"),
            None => "Cpu".into(),
        })
        .collect();
    let scales = if kind == "Target" {
        r#"scales: "profiles/scales/b1.ron","#
    } else {
        ""
    };
    let text = format!(
        "(kind: {kind}, variant: \"{}\", data: {data}, recipe: (epochs: {}, batch_size: {}, lr: {lr}, warmup_epochs: 1, optimizer: Sgd(momentum: 0.9, nesterov: true), weight_decay: {wd}, label_smoothing: 0.1, augment: {augment}), devices: [{}], {scales} seed: 0)",
        s.variant,
        s.epochs,
        s.batch_size,
        devices.join(", ")
    );
    let p: repopt_tui::profile::RunProfile =
        repopt_tui::profile::parse_ron(&text, Path::new("fixture")).unwrap();
    p.validate().unwrap();
    format!("// frozen profile of {}\n{}\n", s.run_id, p.to_ron())
}

/// Writes the whole fixture set into `runs`.
pub fn generate_fixture_runs(runs: &Path) {
    write_run(runs, HS_ID, &hs_events());
    write_run(runs, TARGET_ID, &target_events());
    let d = write_run(runs, REPVGG_ID, &repvgg_events());
    std::fs::write(
        d.join("stdout.log"),
        "epoch 1 iter 30 loss 5.011\nError: CUDA out of memory: tried to allocate 2.00 GiB on cuda:1\n",
    )
    .unwrap();
    write_run(runs, ABLATION_ID, &ablation_events());
    write_run(runs, PROBE_ID, &probe_events());
}

/// The read-only data folder (`../shared/data` beside the project): `$REPOPT_SHARED_DATA`,
/// then `<crate>/../shared/data`, then `/work/shared/data`.
pub fn shared_data() -> PathBuf {
    if let Ok(dir) = std::env::var("REPOPT_SHARED_DATA") {
        return PathBuf::from(dir);
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if beside.is_dir() {
        return beside;
    }
    PathBuf::from("/work/shared/data")
}

/// A fixture file under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    fixtures_dir().join(rel)
}

/// Relative L2 distance ||a - b|| / ||b||.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A coordinator port for a multi-node test on loopback whose following `n` ports (the nodes'
/// data ports) are free too; tests running at the same time get different blocks. Below
/// Linux's ephemeral range (32768 on), so that no outgoing connection of a running test takes
/// a port a node is about to listen on.
pub fn free_port_block(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 700) as u16 * 16;
    loop {
        let base = (start + NEXT.fetch_add(n + 1, Ordering::SeqCst)) % 12000 + 20000;
        if (base..=base + n).all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return base;
        }
    }
}
