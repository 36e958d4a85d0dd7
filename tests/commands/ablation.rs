//! The paper's ablations (Table 4) as switches of a Target run: the scale source (`ones`,
//! `hs-init`, a file or an HS run, each optionally averaged across channels), `reinit` and
//! `modify_gradients`; and the `scales derive` / `scales show` commands that make and show the
//! derived scales.
//!
//! References are independent of the code under test: values computed by hand, the HS model's
//! own initial scales, and a plain SGD step (momentum, Nesterov, weight decay with the official
//! groups) written out below in f64 on the host.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::runs::run;
use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use repopt_tui::model::loss::cross_entropy;
use repopt_tui::model::params::{PathStack, is_buffer, named_tensors};
use repopt_tui::model::{HsNet, TargetNet, variant};
use repopt_tui::optim::scale_sources::{channel_average, hs_init, ones};
use repopt_tui::optim::{IdentityInit, reinitialize};
use repopt_tui::profile::{RunProfile, ScaleSource, ScalesProfile, parse_ron};
use repopt_tui::train::checkpoint;
use repopt_tui::train::hooks::TrainModel;
use repopt_tui::train::scales::load_scale_source;
use repopt_tui::train::{target_model, target_optimizer};

type B = Flex;
type AB = Autodiff<Flex>;

/// A valid Target profile of T0 on synthetic data with `extra` at the top level.
fn target_profile(nesterov: bool, extra: &str) -> RunProfile {
    let text = format!(
        r#"(
    kind: Target,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16),
    recipe: (epochs: 1, batch_size: 8, lr: 0.1, optimizer: Sgd(momentum: 0.9, nesterov: {nesterov}),
             weight_decay: 0.05, augment: CifarStandard),
    devices: [Cpu],
    seed: 5,
    {extra}
)"#
    );
    let p: RunProfile = parse_ron(&text, Path::new("test.ron")).unwrap();
    p.validate().unwrap();
    p
}

fn t0_scales() -> ScalesProfile {
    ScalesProfile::load_for(&common::fixture("t0-scales.ron"), &variant("T0").unwrap()).unwrap()
}

// ---- scale sources: hand values ----

/// `hs-init` is exactly what the HS model starts from (read off a fresh HS model's scale
/// layers, not from the formula).
#[test]
fn hs_init_equals_the_scales_of_a_fresh_hs_model() {
    for name in ["T0", "T1", "B1"] {
        let v = variant(name).unwrap();
        let net = HsNet::<AB>::init(&v, 10, 3, &Default::default());
        let fresh = net.scales(name, "model").unwrap();
        assert_eq!(fresh.blocks, hs_init(&v).blocks, "{name}");
    }
}

/// The channel average of the committed T0 fixture, block by block, against means computed
/// here from the file's values; and `load_scale_source` (what a run uses) gives the same.
#[test]
fn channel_average_of_a_scales_file() {
    let v = variant("T0").unwrap();
    let scales = t0_scales();
    let source = ScaleSource::Path(common::fixture("t0-scales.ron"));
    let averaged = load_scale_source(&source, true, &v).unwrap();
    assert_eq!(averaged, channel_average(&scales));
    for (a, b) in averaged.blocks.iter().zip(&scales.blocks) {
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        for (avg, orig) in [(&a.s, &b.s), (&a.t, &b.t)]
            .into_iter()
            .chain(a.u.as_ref().zip(b.u.as_ref()))
        {
            assert_eq!(avg.len(), orig.len());
            assert!(avg.iter().all(|&x| (x as f64 - mean(orig)).abs() < 1e-7));
        }
    }
    // stage0 of the fixture, by hand: s = [0.37128186, 0.8091327, 0.84337735, 1.1050059,
    // 0.9134668, -0.06963074, 0.44794816, -0.2195394], sum 4.20870... / 8.
    let s0: f64 = [
        0.37128186,
        0.8091327,
        0.84337735,
        1.1050059,
        0.9134668,
        -0.06963074,
        0.44794816,
        -0.2195394,
    ]
    .iter()
    .sum::<f64>()
        / 8.0;
    assert!((averaged.blocks[0].s[3] as f64 - s0).abs() < 1e-7);
}

// ---- Grad Mult from the derived scales: the masks a Target run applies, read off one step ----

/// With momentum 0, no weight decay, lr 1 and a gradient of ones, one step moves each weight by
/// exactly its mask: W − W' = M.
fn masks_of(profile: &RunProfile, scales: &ScalesProfile) -> BTreeMap<String, Vec<f32>> {
    let device = Default::default();
    let v = profile.variant();
    let model = TargetNet::<AB>::init(&v, 4, 1, &device);
    let mut opt = target_optimizer::<B>(profile, scales, &device);
    let before = convs(&model.valid());
    let mut grads = GradientsParams::new();
    let mut ids = Vec::new();
    for b in model.blocks() {
        ids.push((b.conv.weight.id, b.conv.weight.val().shape()));
    }
    for (id, shape) in ids {
        grads.register::<B, 4>(id, Tensor::<B, 4>::ones(shape, &device));
    }
    let after = convs(&opt.step(model, grads, 1.0).0.valid());
    before
        .into_iter()
        .map(|(n, w)| {
            let moved = w.iter().zip(&after[&n]).map(|(a, b)| a - b).collect();
            (n, moved)
        })
        .collect()
}

fn convs<Bk: burn::tensor::backend::Backend>(m: &TargetNet<Bk>) -> BTreeMap<String, Vec<f32>> {
    named_tensors::<Bk, _>(m)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".conv.weight"))
        .map(|(n, d)| (n, d.convert::<f32>().to_vec().unwrap()))
        .collect()
}

fn no_momentum_profile(extra: &str) -> RunProfile {
    let text = format!(
        r#"(kind: Target, variant: "T0", data: (kind: Synthetic, classes: 4, image_size: 16),
    recipe: (epochs: 1, batch_size: 8, lr: 0.1, optimizer: Sgd(momentum: 0.0, nesterov: false),
             weight_decay: 0.0, augment: CifarStandard),
    devices: [Cpu], {extra})"#
    );
    let p: RunProfile = parse_ron(&text, Path::new("test.ron")).unwrap();
    p.validate().unwrap();
    p
}

#[test]
fn the_masks_of_ones_and_hs_init_by_hand() {
    let v = variant("T0").unwrap();
    let p = no_momentum_profile("scales: \"ones\"");
    let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
    // ones: M = 1 + [centre]·1 + [o = i, centre]·1 (identity blocks only).
    for (block, m) in masks_of(&p, &ones(&v)) {
        let plan = v
            .plan()
            .into_iter()
            .find(|b| format!("{}.conv.weight", b.name) == block)
            .unwrap();
        let cin = plan.in_channels;
        for (j, &x) in m.iter().enumerate() {
            let (o, i, tap) = (j / (cin * 9), (j / 9) % cin, j % 9);
            let want = match (tap == 4, o == i && plan.has_identity()) {
                (false, _) => 1.0,
                (true, false) => 2.0,
                (true, true) => 3.0,
            };
            assert!(close(x, want), "{block}[{j}] = {x}, by hand {want}");
        }
    }
    // hs-init: stage2.1 of T0 is block 1 of its stage, s = t = sqrt(2): corners 2, centres 4,
    // diagonal centres 5; stage2.0 (block 0, stride 2): 1, 2.
    let m = masks_of(&p, &hs_init(&v));
    let s21 = &m["stage2.1.conv.weight"];
    let cin = 16;
    assert!(close(s21[0], 2.0) && close(s21[4], 5.0) && close(s21[9 + 4], 4.0));
    assert!(
        close(s21[(cin + 1) * 9 + 4], 5.0),
        "o = i = 1: centre + identity"
    );
    let s20 = &m["stage2.0.conv.weight"];
    assert!(close(s20[0], 1.0) && close(s20[4], 2.0));
    // modify_gradients: false: no mask at all (every weight moves by the gradient, 1).
    let plain = no_momentum_profile("scales: \"ones\", modify_gradients: false");
    for (block, m) in masks_of(&plain, &ones(&v)) {
        assert!(m.iter().all(|&x| close(x, 1.0)), "{block}");
    }
}

// ---- modify_gradients: false is plain SGD; reinit: false is the plain initialization ----

/// Gradients by parameter name.
struct NamedGrads<'a> {
    path: PathStack,
    grads: &'a GradientsParams,
    out: BTreeMap<String, Vec<f64>>,
}

impl ModuleVisitor<AB> for NamedGrads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self
            .grads
            .get::<<AB as AutodiffBackend>::InnerBackend, D>(param.id)
        {
            let v: Vec<f32> = g.into_data().to_vec().unwrap();
            self.out
                .insert(self.path.path(), v.into_iter().map(f64::from).collect());
        }
    }
}

fn params(model: &TargetNet<AB>) -> BTreeMap<String, (usize, Vec<f64>)> {
    named_tensors::<AB, _>(model)
        .into_iter()
        .filter(|(n, _)| !is_buffer(n))
        .map(|(n, d)| {
            let rank = d.shape.len();
            let v: Vec<f32> = d.to_vec().unwrap();
            (n, (rank, v.into_iter().map(f64::from).collect()))
        })
        .collect()
}

/// The reference: PyTorch's SGD (no dampening) in the official order, written out in f64.
/// d = g + wd·W (conv and linear weights only: 1-D tensors and biases do not decay); buf = d on
/// the first step, else m·buf + d; step = d + m·buf with Nesterov, else buf; W ← W − lr·step.
struct PlainSgd {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    wd: f64,
    buf: BTreeMap<String, Vec<f64>>,
}

impl PlainSgd {
    fn step(
        &mut self,
        params: &BTreeMap<String, (usize, Vec<f64>)>,
        grads: &BTreeMap<String, Vec<f64>>,
    ) -> BTreeMap<String, Vec<f64>> {
        let mut out = BTreeMap::new();
        for (name, (rank, w)) in params {
            let g = &grads[name];
            let wd = if *rank > 1 && !name.ends_with(".bias") {
                self.wd
            } else {
                0.0
            };
            let d: Vec<f64> = g.iter().zip(w).map(|(g, w)| g + wd * w).collect();
            let buf = match self.buf.remove(name) {
                None => d.clone(),
                Some(b) => b
                    .iter()
                    .zip(&d)
                    .map(|(b, d)| self.momentum * b + d)
                    .collect(),
            };
            let step: Vec<f64> = if self.nesterov {
                d.iter()
                    .zip(&buf)
                    .map(|(d, b)| d + self.momentum * b)
                    .collect()
            } else {
                buf.clone()
            };
            out.insert(
                name.clone(),
                w.iter().zip(&step).map(|(w, s)| w - self.lr * s).collect(),
            );
            self.buf.insert(name.clone(), buf);
        }
        out
    }
}

fn batch(step: usize) -> (Tensor<AB, 4>, Tensor<AB, 1, Int>) {
    let device = Default::default();
    let n = 8 * 3 * 16 * 16;
    let x: Vec<f32> = (0..n)
        .map(|j| ((j * 7919 + step * 104_729) as f32 * 0.001).sin())
        .collect();
    let y: Vec<i64> = (0..8).map(|j| ((j + step) % 4) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [8, 3, 16, 16]), &device),
        Tensor::from_data(TensorData::new(y, [8]), &device),
    )
}

/// Largest relative difference between the optimizer's step and the reference over the steps
/// (each step from the optimizer's own previous weights, with the reference's own momentum).
fn worst_against_plain_sgd(profile: &RunProfile, tensor_ops: bool) -> (f64, String) {
    let device = Default::default();
    let scales = t0_scales();
    let mut model = target_model::<AB>(profile, &scales, 4, &device);
    let mut opt = target_optimizer::<B>(profile, &scales, &device);
    if tensor_ops {
        opt = opt.with_tensor_ops();
    }
    let repopt_tui::optim::UpdateRule::Sgd { momentum, nesterov } = profile.recipe.optimizer else {
        panic!("SGD profile")
    };
    let mut reference = PlainSgd {
        lr: 0.1,
        momentum,
        nesterov,
        wd: profile.recipe.weight_decay,
        buf: BTreeMap::new(),
    };
    let mut worst = (0.0f64, String::new());
    for step in 0..4 {
        let (x, y) = batch(step);
        let loss = cross_entropy(model.forward(x, true), y, 0.1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut named = NamedGrads {
            path: PathStack::default(),
            grads: &grads,
            out: BTreeMap::new(),
        };
        model.visit(&mut named);
        let before = params(&model);
        assert_eq!(
            named.out.len(),
            before.len(),
            "a gradient for every parameter"
        );
        let want = reference.step(&before, &named.out);
        model = opt.step(model, grads, 0.1).0;
        for (name, (_, got)) in params(&model) {
            let w = &want[&name];
            let num: f64 = got.iter().zip(w).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f64 = w.iter().map(|b| b * b).sum();
            let rel = (num / den.max(1e-30)).sqrt();
            if rel > worst.0 {
                worst = (rel, format!("{name} after step {step}"));
            }
        }
    }
    worst
}

#[test]
fn modify_gradients_false_is_plain_sgd_with_momentum_and_weight_decay() {
    for nesterov in [true, false] {
        let p = target_profile(nesterov, "scales: \"x.ron\", modify_gradients: false");
        for tensor_ops in [false, true] {
            let (err, at) = worst_against_plain_sgd(&p, tensor_ops);
            eprintln!("nesterov {nesterov}, tensor ops {tensor_ops}: {err:.2e} at {at}");
            assert!(err < 1e-6, "{err:e} at {at}");
        }
    }
    // Negative control: with the masks (the default) the same reference is far off.
    let masked = target_profile(true, "scales: \"x.ron\"");
    let (err, at) = worst_against_plain_sgd(&masked, false);
    eprintln!("with Grad Mult: {err:.2e} at {at}");
    assert!(err > 1e-3, "the masks must change the step: {err:e}");
}

#[test]
fn reinit_false_keeps_the_fresh_initialization_and_true_is_eq_4() {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let scales = t0_scales();
    let fresh = convs(&TargetNet::<B>::init(&v, 4, 5, &device));
    let off = target_profile(true, "scales: \"x.ron\", reinit: false");
    assert_eq!(convs(&target_model::<B>(&off, &scales, 4, &device)), fresh);
    let on = target_profile(true, "scales: \"x.ron\"");
    let eq4 = convs(&reinitialize(
        TargetNet::<B>::init(&v, 4, 5, &device),
        &v,
        &scales,
        IdentityInit::Trained,
        5,
    ));
    let got = convs(&target_model::<B>(&on, &scales, 4, &device));
    assert_eq!(got, eq4);
    assert_ne!(got, fresh);
}

// ---- the switches in real runs ----

/// A tiny synthetic Target profile (T0, 96 images, warm-up from 0 so the first step keeps the
/// initial kernels).
fn run_profile(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: Target,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: 32, synthetic_seed: 3),
    recipe: (
        epochs: 2, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.5,
        optimizer: Sgd(momentum: 0.9, nesterov: true),
        weight_decay: 4e-5, label_smoothing: 0.1, augment: CifarStandard, workers: 2,
    ),
    devices: [Cpu],
    seed: 5,
    log_every: 1,
    {extra}
)"#
        ),
    )
    .unwrap();
    path
}

fn start(runs: &Path, profile: &Path, id: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        id,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn first_checkpoint_convs(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let (found, _) = checkpoint::newest_valid(&dir.join("ckpt"));
    let ckpt = found.expect("a valid checkpoint").1;
    assert_eq!(ckpt.state.global_iter, 1);
    ckpt.model
        .into_iter()
        .filter(|(n, _)| n.ends_with(".conv.weight"))
        .map(|(n, d)| (n, d.to_vec::<f32>().unwrap()))
        .collect()
}

/// `average_channels` on a scales file: the run freezes the averaged scales, starts from Eq. 4
/// with them, and resumes from its frozen copy (restoring it when it was deleted).
#[test]
fn a_run_with_averaged_scales_freezes_and_uses_the_average() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let v = variant("T0").unwrap();
    let file = common::fixture("t0-scales.ron");
    let p = run_profile(
        tmp.path(),
        "avg",
        &format!("scales: \"{}\", average_channels: true,", file.display()),
    );
    assert!(
        start(&runs, &p, "avg", &["--stop-after", "1"])
            .status
            .success()
    );
    let dir = runs.join("avg");
    let frozen = ScalesProfile::load(&dir.join("scales.frozen.ron")).unwrap();
    let averaged = channel_average(&t0_scales());
    assert_eq!(frozen.blocks, averaged.blocks);
    let frozen_profile = RunProfile::load(&dir.join("profile.ron")).unwrap();
    assert_eq!(frozen_profile.average_channels, Some(true));
    let fresh = TargetNet::<B>::init(&v, 4, 5, &Default::default());
    let want = convs(&reinitialize(
        fresh,
        &v,
        &averaged,
        IdentityInit::Trained,
        5,
    ));
    assert_eq!(first_checkpoint_convs(&dir), want);
    // Resume without the frozen copy: it is rebuilt from the source, identical.
    let bytes = std::fs::read(dir.join("scales.frozen.ron")).unwrap();
    std::fs::remove_file(dir.join("scales.frozen.ron")).unwrap();
    assert!(start(&runs, &p, "avg", &["--resume"]).status.success());
    assert_eq!(std::fs::read(dir.join("scales.frozen.ron")).unwrap(), bytes);
}

/// `scales: "hs-init"` with `reinit: false`: the frozen scales are the HS initialization, the
/// kernels the plain initialization, and the frozen profile keeps the switch.
#[test]
fn a_run_with_hs_init_scales_and_no_reinit() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let v = variant("T0").unwrap();
    let p = run_profile(tmp.path(), "hsinit", "scales: \"hs-init\", reinit: false,");
    assert!(
        start(&runs, &p, "hsinit", &["--stop-after", "1"])
            .status
            .success()
    );
    let dir = runs.join("hsinit");
    let frozen = ScalesProfile::load(&dir.join("scales.frozen.ron")).unwrap();
    assert_eq!(frozen, hs_init(&v));
    let profile = RunProfile::load(&dir.join("profile.ron")).unwrap();
    assert_eq!(
        (profile.scales.as_deref(), profile.reinit),
        (Some("hs-init"), Some(false))
    );
    let fresh = convs(&TargetNet::<B>::init(&v, 4, 5, &Default::default()));
    assert_eq!(first_checkpoint_convs(&dir), fresh);
}

/// A run given a typo for a generated source says what exists.
#[test]
fn an_unknown_scale_source_is_refused_with_the_accepted_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let p = run_profile(tmp.path(), "typo", "scales: \"one\",");
    let out = start(&tmp.path().join("runs"), &p, "typo", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("one does not exist") && err.contains("ones or hs-init"),
        "{err}"
    );
}

// ---- scales derive / show ----

#[test]
fn scales_derive_writes_what_a_run_would_use_and_show_reads_every_source() {
    let tmp = tempfile::tempdir().unwrap();
    let out = |name: &str| tmp.path().join(name);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let v = variant("T0").unwrap();
    // Generated sources need the variant.
    let o = run(&[
        "scales",
        "derive",
        "--from",
        "ones",
        "--variant",
        "T0",
        "-o",
        &s(&out("ones.ron")),
    ]);
    assert!(o.status.success());
    assert_eq!(ScalesProfile::load(&out("ones.ron")).unwrap(), ones(&v));
    let o = run(&[
        "scales",
        "derive",
        "--from",
        "hs-init",
        "-o",
        &s(&out("x.ron")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hs-init depends on the model: give --variant"),
        "{err}"
    );
    // A file, averaged; its variant comes from the file and a different --variant is refused.
    let fixture = common::fixture("t0-scales.ron");
    let o = run(&[
        "scales",
        "derive",
        "--from",
        &s(&fixture),
        "--average-channels",
        "-o",
        &s(&out("avg.ron")),
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("channel average of"));
    let avg = ScalesProfile::load(&out("avg.ron")).unwrap();
    assert_eq!(avg, channel_average(&t0_scales()));
    let o = run(&["scales", "show", &s(&fixture), "--variant", "B1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("these scales are for variant T0"));
    // An HS run directory and run:<name> under --runs-dir: its scales.ron.
    let runs = out("runs");
    let hs = runs.join("hs-20261201-120000");
    std::fs::create_dir_all(&hs).unwrap();
    std::fs::write(hs.join("events.jsonl"), "").unwrap();
    hs_init(&v).save(&hs.join("scales.ron")).unwrap();
    for source in [s(&hs), "run:hs".to_string()] {
        let o = run(&[
            "scales",
            "show",
            &source,
            "--average-channels",
            "--runs-dir",
            &s(&runs),
        ]);
        assert!(o.status.success(), "{source}");
        let table = String::from_utf8_lossy(&o.stdout);
        // stage2.1 is block 1 of its stage: s = t = sqrt(2) = 1.414, u = 1.
        let row = table.lines().find(|l| l.starts_with("stage2.1")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            [
                "stage2.1", "16", "1.414", "[", "1.414,", "1.414]", "0", "1.414", "[", "1.414,",
                "1.414]", "0", "1.000", "[", "1.000,", "1.000]", "0"
            ],
            "{table}"
        );
        assert!(
            table.contains("source: channel average of: HS initialization"),
            "{table}"
        );
    }
    // What derive writes is a scales profile a Target run takes as it is.
    let p = run_profile(
        tmp.path(),
        "derived",
        &format!("scales: \"{}\",", out("avg.ron").display()),
    );
    assert!(
        start(&runs, &p, "derived", &["--stop-after", "1"])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(runs.join("derived/scales.frozen.ron")).unwrap(),
        std::fs::read(out("avg.ron")).unwrap()
    );
}

// ---- kernel-stats (Table 11 / Fig. 5) ----

fn population_std(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

/// (centre std, surround std) of a [cout, cin, 3, 3] kernel, written out here.
fn centre_surround(k: &[f64]) -> (f64, f64) {
    let centre: Vec<f64> = k.iter().skip(4).step_by(9).copied().collect();
    let surround: Vec<f64> = k
        .iter()
        .enumerate()
        .filter(|(j, _)| j % 9 != 4)
        .map(|(_, &x)| x)
        .collect();
    (population_std(&centre), population_std(&surround))
}

fn json_stats(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pair(v: &serde_json::Value) -> (f64, f64) {
    (
        v["centre_std"].as_f64().unwrap(),
        v["surround_std"].as_f64().unwrap(),
    )
}

fn assert_pair(got: (f64, f64), want: (f64, f64), what: &str) {
    for (g, w) in [(got.0, want.0), (got.1, want.1)] {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs(),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

/// The PyTorch-written RepVGG fixture: BN fusion and branch merging of an identity block,
/// recomputed here from the raw state dict (BN scale gamma / sqrt(var + 1e-5) per output
/// channel; the 1x1 kernel and the identity's BN scale added to the centres).
#[test]
fn kernel_stats_of_official_repvgg_weights_against_the_state_dict() {
    let pth = common::fixture("pth/t0-repvgg.pth");
    let report = json_stats(&[
        "kernel-stats",
        pth.to_str().unwrap(),
        "--variant",
        "T0",
        "--json",
    ]);
    assert_eq!(report["kind"], "repvgg", "the kind is read off the names");
    let sd = repopt_tui::interop::read_pth(&pth).unwrap();
    let get = |k: &str| -> Vec<f64> { sd[k].values.iter().map(|&x| x as f64).collect() };
    let bn_scale = |p: &str| -> Vec<f64> {
        get(&format!("{p}.weight"))
            .iter()
            .zip(get(&format!("{p}.running_var")))
            .map(|(g, v)| g / (v + 1e-5).sqrt())
            .collect()
    };
    let layers = report["layers"].as_array().unwrap();
    for (index, block) in [(0usize, "stage0"), (3, "stage2.1")] {
        let layer = &layers[index];
        assert_eq!(layer["layer"], block);
        let k3 = get(&format!("{block}.conv_3x3.weight"));
        let k1 = get(&format!("{block}.conv_1x1.weight"));
        let cout = get(&format!("{block}.bn_3x3.weight")).len();
        let cin = k1.len() / cout;
        let (s3, s1) = (
            bn_scale(&format!("{block}.bn_3x3")),
            bn_scale(&format!("{block}.bn_1x1")),
        );
        let fused: Vec<f64> = k3
            .iter()
            .enumerate()
            .map(|(j, w)| w * s3[j / (cin * 9)])
            .collect();
        let mut merged = fused.clone();
        for o in 0..cout {
            for i in 0..cin {
                merged[(o * cin + i) * 9 + 4] += k1[o * cin + i] * s1[o];
            }
        }
        if block == "stage2.1" {
            let sid = bn_scale(&format!("{block}.bn_identity"));
            for o in 0..cout {
                merged[(o * cin + o) * 9 + 4] += sid[o];
            }
        }
        assert_pair(pair(&layer["train"]), centre_surround(&k3), block);
        assert_pair(pair(&layer["bn_fused"]), centre_surround(&fused), block);
        assert_pair(pair(&layer["merged"]), centre_surround(&merged), block);
    }
    // Merging piles the branches onto the centre: the merged centre spreads wider than the
    // surroundings in every layer (what the paper's Fig. 5 shows for RepVGG).
    for l in layers {
        let (c, s) = pair(&l["merged"]);
        assert!(c > 2.0 * s, "{l}");
    }
}

#[test]
fn kernel_stats_of_a_run_directory_and_the_errors_it_explains() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let p = run_profile(tmp.path(), "ks", "scales: \"ones\",");
    assert!(
        start(&runs, &p, "ks", &["--stop-after", "1"])
            .status
            .success()
    );
    let dir = runs.join("ks");
    let report = json_stats(&["kernel-stats", dir.to_str().unwrap(), "--json"]);
    assert_eq!(
        (report["kind"].as_str(), report["variant"].as_str()),
        (Some("target"), Some("T0"))
    );
    let convs = first_checkpoint_convs(&dir);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 7);
    for l in layers {
        let name = format!("{}.conv.weight", l["layer"].as_str().unwrap());
        let k: Vec<f64> = convs[&name].iter().map(|&x| x as f64).collect();
        assert_pair(pair(&l["train"]), centre_surround(&k), &name);
        // A target block has one branch: merged is the BN-fused kernel.
        assert_eq!(l["merged"], l["bn_fused"]);
    }
    // The table names every layer and the three forms.
    let out = run(&["kernel-stats", dir.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("stage3.1") && table.contains("BN fused") && table.contains("mean c/s"),
        "{table}"
    );
    // A weights file without --variant, and weights of another kind.
    let pth = common::fixture("pth/t0-target.pth");
    let out = run(&["kernel-stats", pth.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --variant"));
    let out = run(&[
        "kernel-stats",
        pth.to_str().unwrap(),
        "--variant",
        "T0",
        "--kind",
        "repvgg",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit the RepVGG model"), "{err}");
}

// ---- the paper's comparison and Table 4 grid under profiles/cifar10 ----

#[test]
fn the_cifar10_profiles_share_one_recipe_and_differ_only_in_their_switches() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/cifar10");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    let mut cells = Vec::new();
    let mut hs = None;
    let mut repvgg = None;
    for file in &files {
        let p = RunProfile::load(file).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(file).unwrap();
        let header = text.lines().next().unwrap();
        let stem = file.file_stem().unwrap().to_str().unwrap();
        // Each names its command, so a renamed file is caught.
        assert!(
            text.contains(&format!("--profile profiles/cifar10/{stem}.ron")),
            "{stem}"
        );
        match p.kind {
            repopt_tui::profile::RunKind::HyperSearch => {
                assert!(header.starts_with("// Hyper-Search"), "{header}");
                assert_eq!(stem, "cifar10-hs");
                hs = Some(p);
            }
            repopt_tui::profile::RunKind::Baseline => {
                assert_eq!(stem, "cifar10-repvgg");
                repvgg = Some(p);
            }
            _ => cells.push((file.clone(), p)),
        }
    }
    let repvgg = repvgg.expect("the comparison's RepVGG profile");
    let hs = hs.expect("the grid's Hyper-Search profile");
    let (_, first) = &cells[0];
    let mut switches = Vec::new();
    for (file, p) in &cells {
        // Same model, data, recipe, devices and seed in every cell (and the HS run's data).
        assert_eq!(
            (&p.variant, &p.data, &p.recipe, &p.devices, p.seed),
            (
                &first.variant,
                &first.data,
                &first.recipe,
                &first.devices,
                first.seed
            ),
            "{}",
            file.display()
        );
        assert_eq!((&p.variant, &p.data), (&hs.variant, &hs.data));
        assert_eq!(
            (&p.variant, &p.data, &p.recipe, &p.devices, p.seed),
            (
                &repvgg.variant,
                &repvgg.data,
                &repvgg.recipe,
                &repvgg.devices,
                repvgg.seed
            )
        );
        assert_eq!(p.data.classes, Some(10));
        switches.push((
            p.scales.clone().unwrap_or_default(),
            p.average_channels(),
            p.kind == repopt_tui::profile::RunKind::Target && p.reinit(),
            p.kind == repopt_tui::profile::RunKind::Target && p.modify_gradients(),
        ));
    }
    switches.sort();
    let s = |x: &str| x.to_string();
    let mut expected = vec![
        (s("run:cifar10-hs"), false, true, true),
        (s("ones"), false, true, true),
        (s("hs-init"), false, true, true),
        (s("run:cifar10-hs"), true, true, true),
        (s("run:cifar10-hs"), false, false, true),
        (s("run:cifar10-hs"), false, true, false),
        (s(""), false, false, false),
    ];
    expected.sort();
    assert_eq!(switches, expected, "one profile per cell of the grid");
    // The HS run differs from the others only by its gradient clipping (the official HS recipe).
    let mut hs_recipe = hs.recipe.clone();
    hs_recipe.grad_clip = None;
    assert_eq!(hs_recipe, first.recipe);
}

/// A finished run writes its final weights' kernel statistics: `kernel_stats.json` equals
/// `kernel-stats --json` of its `model.safetensors` (RepVGG, whose merged form differs).
#[test]
fn a_finished_run_writes_the_kernel_statistics_of_its_final_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let p = tmp.path().join("rv.ron");
    std::fs::write(
        &p,
        r#"(
    kind: Baseline,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 32, synthetic_val: 16, synthetic_seed: 3),
    recipe: (epochs: 1, batch_size: 16, lr: 0.05, lr_scaling: false, optimizer: Sgd(momentum: 0.9, nesterov: true),
             weight_decay: 4e-5, augment: CifarStandard, workers: 1),
    devices: [Cpu],
    seed: 5,
)"#,
    )
    .unwrap();
    let out = start(&runs, &p, "rv", &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kernel_stats.json"));
    let dir = runs.join("rv");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kernel_stats.json")).unwrap()).unwrap();
    let weights = dir.join("model.safetensors");
    let fresh = json_stats(&[
        "kernel-stats",
        weights.to_str().unwrap(),
        "--variant",
        "T0",
        "--json",
    ]);
    assert_eq!(written["kind"], "repvgg");
    assert_eq!(written["weights"], "model.safetensors");
    assert_eq!(written["layers"], fresh["layers"]);
    assert_ne!(
        written["layers"][0]["merged"], written["layers"][0]["bn_fused"],
        "RepVGG's merged kernel is not its 3x3 branch"
    );
}

/// The dashboard's scales view shows a finished non-HS run's `kernel_stats.json` (the values
/// the file holds, per layer and form), and keeps its old explanation for a run without one.
#[test]
fn the_scales_view_shows_a_finished_runs_kernel_statistics() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use repopt_tui::tui::keymap::Action;
    use repopt_tui::tui::{App, AppConfig, Collector, GpuSource, Store, ui};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let p = run_profile(tmp.path(), "tgt", "scales: \"ones\",");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("epochs: 2,", "epochs: 1, max_iters_per_epoch: 2,");
    std::fs::write(&p, text).unwrap();
    assert!(start(&runs, &p, "done", &[]).status.success());
    assert!(
        start(&runs, &p, "stopped", &["--stop-after", "1"])
            .status
            .success()
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs.join("done/kernel_stats.json")).unwrap())
            .unwrap();

    let profiles = tmp.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let store = Arc::new(Mutex::new(Store::new(&runs, &profiles)));
    Collector::new(&runs, &profiles, GpuSource::Off).poll_until_loaded(&store);
    let mut app = App::new(
        store,
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    let screen = |app: &mut App| {
        let mut t = Terminal::new(TestBackend::new(110, 20)).unwrap();
        t.draw(|f| ui::render(app, f)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    app.selected = Some("done".into());
    app.act(Action::ViewScales);
    let s = screen(&mut app);
    assert!(s.contains("Kernel statistics of done"), "{s}");
    assert!(
        s.contains("trained c") && s.contains("fused c") && s.contains("merged c"),
        "{s}"
    );
    // Each layer's row carries the file's ratios (2 decimals).
    for l in written["layers"].as_array().unwrap() {
        let name = l["layer"].as_str().unwrap();
        let ratio = |form: &str| {
            l[form]["centre_std"].as_f64().unwrap() / l[form]["surround_std"].as_f64().unwrap()
        };
        let row = s
            .lines()
            .find(|line| line.contains(&format!("│{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{s}"));
        for form in ["train", "merged"] {
            let want = format!("{:.2}", ratio(form));
            assert!(row.contains(&want), "{name} {form}: {want} not in {row}");
        }
    }
    // A run that did not finish has no kernel statistics yet: the old explanation stays.
    app.selected = Some("stopped".into());
    let s = screen(&mut app);
    assert!(s.contains("Not a Hyper-Search run"), "{s}");
}

/// Fig. 6: two marked Hyper-Search runs overlaid in the scales view — per epoch the network's
/// mean s, t, u — whose last points are the means of each run's own `scales.ron`.
#[test]
fn marked_hyper_search_runs_are_overlaid_in_the_scales_view() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use repopt_tui::rundir::events::EventBody;
    use repopt_tui::rundir::network_means;
    use repopt_tui::tui::keymap::Action;
    use repopt_tui::tui::{App, AppConfig, Collector, GpuSource, Store, ui};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mut wants = BTreeMap::new();
    for (id, seed) in [("hs-a", 1), ("hs-b", 2)] {
        let p = tmp.path().join(format!("{id}.ron"));
        std::fs::write(
            &p,
            format!(
                r#"(
    kind: HyperSearch,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 48, synthetic_val: 16, synthetic_seed: 3),
    recipe: (epochs: 2, batch_size: 16, lr: 0.1, lr_scaling: false, optimizer: Sgd(momentum: 0.9, nesterov: true),
             weight_decay: 4e-5, augment: CifarStandard, workers: 1),
    devices: [Cpu],
    seed: {seed},
)"#
            ),
        )
        .unwrap();
        assert!(start(&runs, &p, id, &[]).status.success());
        // The last scales event's network means are those of the run's own scales.ron.
        let last = common::runs::events(&runs.join(id))
            .into_iter()
            .rev()
            .find_map(|e| match e.body {
                EventBody::Scales(s) => Some(s),
                _ => None,
            })
            .unwrap();
        let file = ScalesProfile::load(&runs.join(id).join("scales.ron")).unwrap();
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let over = |vs: Vec<f64>| vs.iter().sum::<f64>() / vs.len() as f64;
        let want = [
            over(file.blocks.iter().map(|b| mean(&b.s)).collect()),
            over(file.blocks.iter().map(|b| mean(&b.t)).collect()),
            over(
                file.blocks
                    .iter()
                    .filter_map(|b| b.u.as_deref().map(mean))
                    .collect(),
            ),
        ];
        let got = network_means(&last);
        for k in 0..3 {
            assert!(
                (got[k].unwrap() - want[k]).abs() < 1e-6,
                "{id} {k}: {got:?} vs {want:?}"
            );
        }
        wants.insert(id, want);
    }
    // The same numbers as a report: `scales history` of a run directory and of run:<id>.
    let report = json_stats(&[
        "scales",
        "history",
        runs.join("hs-a").to_str().unwrap(),
        "run:hs-b",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    let report = report.as_array().unwrap();
    assert_eq!(report.len(), 2);
    for (r, id) in report.iter().zip(["hs-a", "hs-b"]) {
        assert_eq!(r["run"], id);
        let epochs = r["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 2, "one row per epoch");
        assert_eq!(epochs[1]["epoch"], 2);
        for (k, key) in ["s", "t", "u"].into_iter().enumerate() {
            let got = epochs[1][key].as_f64().unwrap();
            assert!((got - wants[id][k]).abs() < 1e-6, "{id} {key}");
        }
    }
    let out = run(&["scales", "history", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success(), "not a run directory");
    let profiles = tmp.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let store = Arc::new(Mutex::new(Store::new(&runs, &profiles)));
    Collector::new(&runs, &profiles, GpuSource::Off).poll_until_loaded(&store);
    let mut app = App::new(
        store,
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    let screen = |app: &mut App| {
        let mut t = Terminal::new(TestBackend::new(120, 24)).unwrap();
        t.draw(|f| ui::render(app, f)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    app.selected = Some("hs-a".into());
    app.marked = vec!["hs-a".into()];
    app.act(Action::ViewScales);
    let one = screen(&mut app);
    assert!(
        one.contains("Scales of hs-a"),
        "one marked run: the run's own view\n{one}"
    );
    app.marked.push("hs-b".into());
    let both = screen(&mut app);
    assert!(
        both.contains("Scales of 2 Hyper-Search runs")
            && both.contains("1 hs-a")
            && both.contains("2 hs-b"),
        "{both}"
    );
    for chart in ["mean s (3x3)", "mean t (1x1)", "mean u (identity)"] {
        assert!(both.contains(chart), "{chart}\n{both}");
    }
    assert!(both.contains("ep 1") && both.contains("ep 2"), "{both}");
}
