//! The LibTorch engine (feature `tch`, devices `libtorch:cpu` / `libtorch:cuda:N`) proven with the
//! same independent references as Flex: CSLA ≡ RepOptimizer, the PyTorch fixture trajectory,
//! exact resume of a Target run, data parallel over replicas, and every tool on the engine.
//! `.ci/run` runs this file with the feature on (`source scripts/torch-env.sh` first).
#![cfg(feature = "tch")]
#![allow(clippy::unwrap_used)]

mod common;

use common::runs::{events, final_weights, run, step_losses};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::backend::libtorch::{LibTorch, LibTorchDevice};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use common::{fixture, rel_l2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repopt_tui::data::Batch;
use repopt_tui::interop::{import_scales, read_pth};
use repopt_tui::model::loss::cross_entropy;
use repopt_tui::model::params::named_tensors;
use repopt_tui::model::{DeployNet, TargetNet, variant};
use repopt_tui::optim::equivalence::{VerifyConfig, random_scales, run_equivalence};
use repopt_tui::optim::{GradMults, OptimizerConfig, RepOptimizer, UpdatePath, UpdateRule};
use repopt_tui::rundir::events::EventBody;
use repopt_tui::train::replicas::{Replica, forward_backward, param_ids};
use repopt_tui::train::weights::load_weights;

type B = LibTorch;
type AB = Autodiff<LibTorch>;

const CPU: LibTorchDevice = LibTorchDevice::Cpu;
/// Every update path the LibTorch engine has (the fused one is what `libtorch:cpu` runs, the
/// in-place torch operations what `libtorch:cuda:N` runs, burn's tensor operations the fallback).
const PATHS: [UpdatePath; 3] = [
    UpdatePath::TorchFused,
    UpdatePath::TorchOps,
    UpdatePath::TensorOps,
];

#[test]
fn the_backend_picks_the_fused_torch_update() {
    assert_eq!(UpdatePath::for_backend::<B>(), UpdatePath::TorchFused);
}

#[test]
fn csla_equals_repoptimizer_on_libtorch_for_sgd_and_adamw() {
    let nesterov = UpdateRule::official_sgd();
    let adamw = UpdateRule::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-12,
    };
    for path in PATHS {
        for (rule, lr, negative) in [(nesterov, 0.01, true), (adamw, 0.002, false)] {
            let mut cfg = VerifyConfig::new(variant("T0").unwrap());
            cfg.optimizer = OptimizerConfig::new(rule, 0.05);
            cfg.lr = lr;
            cfg.steps = 12;
            cfg.scales = Some(random_scales(&cfg.variant, 7, negative));
            cfg.update_path = Some(path);
            let r = run_equivalence::<AB>(&cfg, &CPU);
            eprintln!(
                "{path:?} {rule:?}: kernels {:.2e}, outputs {:.2e}, motion {:.3}",
                r.kernel_rel_diff, r.output_rel_diff, r.kernel_motion
            );
            assert!(r.kernel_motion > 0.05, "training must move the kernels");
            assert!(
                r.kernel_rel_diff < 1e-5 && r.output_rel_diff < 1e-5,
                "{path:?} {rule:?}: kernels {:e} at {}, outputs {:e}",
                r.kernel_rel_diff,
                r.worst_block,
                r.output_rel_diff
            );
        }
    }
}

#[test]
fn masking_the_weight_decay_is_caught_on_libtorch_too() {
    for path in [UpdatePath::TorchFused, UpdatePath::TorchOps] {
        let mut cfg = VerifyConfig::new(variant("T0").unwrap());
        cfg.optimizer = OptimizerConfig::new(UpdateRule::official_sgd(), 0.05);
        cfg.optimizer.mask_weight_decay = true;
        cfg.steps = 12;
        cfg.scales = Some(random_scales(&cfg.variant, 7, true));
        cfg.update_path = Some(path);
        let r = run_equivalence::<AB>(&cfg, &CPU);
        assert!(
            r.kernel_rel_diff > 1e-2,
            "{path:?}: {:e}",
            r.kernel_rel_diff
        );
    }
}

fn io() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_pth(&fixture("pth/t0-io.pth"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, (t.shape, t.values)))
        .collect()
}

/// Five RepOptimizer SGD steps of the official-format T0 target equal PyTorch's float64
/// trajectory (fixtures of `tests/fixtures/gen_pth_fixtures.py`), on every LibTorch update path.
#[test]
fn repoptimizer_sgd_trajectory_equals_the_pytorch_reference_on_libtorch() {
    let v = variant("T0").unwrap();
    let io = io();
    let reference = read_pth(&fixture("pth/t0-target-after-sgd.pth")).unwrap();
    for path in PATHS {
        let mut model = load_weights(
            TargetNet::<AB>::init(&v, 10, 0, &CPU),
            &fixture("pth/t0-target.pth"),
            "target",
            &CPU,
        )
        .unwrap();
        let scales = import_scales(&fixture("pth/t0-scales.pth"), &v).unwrap();
        let masks = GradMults::from_scales(&scales, &v, 2, &CPU);
        let mut opt = RepOptimizer::<B>::new(
            OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5),
            masks,
        )
        .with_path(path);
        for step in 0..5 {
            let (shape, values) = io[&format!("sgd_x{step}")].clone();
            let x = Tensor::<AB, 4>::from_data(
                TensorData::new(values, [shape[0], shape[1], shape[2], shape[3]]),
                &CPU,
            );
            let labels: Vec<i64> = io[&format!("sgd_y{step}")]
                .1
                .iter()
                .map(|&y| y as i64)
                .collect();
            let y = Tensor::<AB, 1, Int>::from_data(TensorData::new(labels, [8]), &CPU);
            let loss = cross_entropy(model.forward(x, true), y, 0.1);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let got = loss.into_scalar();
            let expected = io[&format!("sgd_loss{step}")].1[0];
            assert!(
                ((got - expected) / expected).abs() < 1e-5,
                "{path:?} step {step}: loss {got} vs PyTorch (f64) {expected}"
            );
            model = opt.step(model, grads, 0.05).0;
        }
        for (name, data) in named_tensors::<AB, _>(&model) {
            let d = rel_l2(&data.to_vec::<f32>().unwrap(), &reference[&name].values);
            assert!(d < 1e-5, "{path:?} {name}: {d:e} from PyTorch (f64)");
        }
    }
}

/// Data parallel through the LibTorch engine: 1, 2 and 4 replicas of the BN-free deploy model
/// give the same weights for the same global batch.
#[test]
fn replicas_on_libtorch_equal_one_device() {
    fn train(world: usize) -> Vec<Vec<f32>> {
        let v = variant("T0").unwrap();
        let (res, global, classes) = (16, 8, 4);
        let mut model = DeployNet::<AB>::init(&v, classes, 3, &CPU);
        let mut replicas: Vec<Replica<AB, DeployNet<AB>>> = (1..world)
            .map(|r| Replica::new(DeployNet::init(&v, classes, 100 + r as u64, &CPU), CPU))
            .collect();
        let ids = param_ids::<AB, _>(&model);
        let mut opt =
            RepOptimizer::<B>::plain(OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5));
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let per = 3 * res * res;
        for _ in 0..5 {
            let images: Vec<f32> = (0..global * per)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let labels: Vec<i64> = (0..global)
                .map(|_| rng.random_range(0..classes as i64))
                .collect();
            let shard = global / world;
            let shards = (0..world)
                .map(|r| Batch {
                    images: images[r * shard * per..(r + 1) * shard * per].to_vec(),
                    labels: labels[r * shard..(r + 1) * shard].to_vec(),
                    shape: [shard, 3, res, res],
                    iter: 0,
                    indices: (0..shard).collect(),
                })
                .collect();
            let out = forward_backward(&model, &CPU, &mut replicas, &ids, shards, 0.1, classes);
            model = opt.step(model, out.grads, 0.05).0;
        }
        named_tensors::<AB, _>(&model)
            .into_iter()
            .map(|(_, d)| d.to_vec().unwrap())
            .collect()
    }
    let one = train(1);
    let init: Vec<Vec<f32>> =
        named_tensors::<AB, _>(&DeployNet::<AB>::init(&variant("T0").unwrap(), 4, 3, &CPU))
            .into_iter()
            .map(|(_, d)| d.to_vec().unwrap())
            .collect();
    let moved = one
        .iter()
        .zip(&init)
        .map(|(a, b)| rel_l2(a, b))
        .fold(0.0, f64::max);
    assert!(moved > 1e-2, "training moved the weights by {moved:e}");
    for world in [2, 4] {
        for (a, b) in one.iter().zip(&train(world)) {
            let d = rel_l2(b, a);
            assert!(d < 1e-5, "{world} replicas: {d:e}");
        }
    }
}

/// A tiny synthetic profile of `kind` on `devices`: T0, 2 epochs of 6 iterations.
fn tiny_profile(dir: &Path, name: &str, kind: &str, devices: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: {kind},
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: 32, synthetic_seed: 3),
    recipe: (
        epochs: 2, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.5,
        optimizer: Sgd(momentum: 0.9, nesterov: true), weight_decay: 4e-5, label_smoothing: 0.1,
        augment: CifarStandard, workers: 2, {clip}
    ),
    devices: {devices},
    seed: 5,
    log_every: 1,
    {extra}
)"#,
            clip = if kind == "HyperSearch" {
                "grad_clip: 5.0,"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    path
}

const SCALES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/t0-scales.ron");

/// A Target run (Grad Mult masks, momentum) on `libtorch:cpu`, interrupted after 7 of 12
/// iterations and resumed, equals the uninterrupted run: the same losses and weights.
#[test]
fn target_run_on_libtorch_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let profile = tiny_profile(
        tmp.path(),
        "t",
        "Target",
        "[LibTorchCpu]",
        &format!("scales: \"{SCALES}\","),
    );
    let p = profile.to_str().unwrap();
    let whole = run(&["--profile", p, "--runs-dir", runs_s, "--run-id", "whole"]);
    assert!(whole.status.success());
    assert!(String::from_utf8_lossy(&whole.stdout).contains("libtorch:cpu"));
    let split = ["--profile", p, "--runs-dir", runs_s, "--run-id", "split"];
    assert!(
        run(&[&split[..], &["--stop-after", "7"]].concat())
            .status
            .success()
    );
    assert!(run(&[&split[..], &["--resume"]].concat()).status.success());
    let (a, b) = (
        step_losses(&runs.join("whole")),
        step_losses(&runs.join("split")),
    );
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "identical loss sequence");
    for ((name, x), (_, y)) in final_weights(&runs.join("whole"))
        .iter()
        .zip(&final_weights(&runs.join("split")))
    {
        assert_eq!(x, y, "{name}");
    }
}

/// HS (with clipping), Baseline, Ablation and a two-replica Target all train on `libtorch:cpu`.
#[test]
fn every_run_kind_trains_on_libtorch() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let scales = format!("scales: \"{SCALES}\",");
    for (kind, devices, extra) in [
        ("HyperSearch", "[LibTorchCpu]", ""),
        ("Baseline", "[LibTorchCpu]", ""),
        ("Ablation", "[LibTorchCpu]", ""),
        ("Target", "[LibTorchCpu, LibTorchCpu]", scales.as_str()),
    ] {
        let profile = tiny_profile(tmp.path(), kind, kind, devices, extra);
        let out = run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--run-id",
            kind,
        ]);
        assert!(out.status.success(), "{kind} on {devices}");
        let ev = events(&runs.join(kind));
        let finished = ev.iter().find_map(|e| match &e.body {
            EventBody::Finished(f) => Some(f.final_top1),
            _ => None,
        });
        assert!(finished.is_some(), "{kind}: no finished event");
        // 96 images in batches of 16 per device, 2 epochs.
        let replicas = devices.matches("LibTorchCpu").count();
        let losses = step_losses(&runs.join(kind));
        assert!(
            losses.iter().all(|(_, l)| l.is_finite()) && losses.len() == 12 / replicas,
            "{kind}: {losses:?}"
        );
    }
    // The mixed-engine profile is refused by name.
    let mixed = tiny_profile(tmp.path(), "mixed", "Ablation", "[Cpu, LibTorchCpu]", "");
    let out = run(&[
        "--profile",
        mixed.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("one engine"), "{text}");
}

/// The tools on the LibTorch engine: verify, bench (naming the engine), eval, export, probe.
#[test]
fn tools_run_on_libtorch() {
    let out = run(&[
        "verify",
        "--variant",
        "T0",
        "--steps",
        "5",
        "--device",
        "libtorch:cpu",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));

    let out = run(&[
        "bench",
        "model",
        "--variant",
        "T0",
        "--res",
        "16",
        "--batch",
        "4",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--device",
        "libtorch:cpu",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("engine: libtorch 2.9.0"), "{stdout}");
    assert!(stdout.contains("RepOptimizer step"), "{stdout}");

    // eval and export of a finished libtorch run.
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "b", "Baseline", "[LibTorchCpu]", "");
    assert!(
        run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--run-id",
            "b"
        ])
        .status
        .success()
    );
    let run_dir = runs.join("b");
    let out = run(&[
        "eval",
        "--profile",
        profile.to_str().unwrap(),
        "--weights",
        run_dir.join("model.safetensors").to_str().unwrap(),
        "--device",
        "libtorch:cpu",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("top-1"));
    let exported = tmp.path().join("deploy.safetensors");
    let out = run(&[
        "export",
        run_dir.to_str().unwrap(),
        "-o",
        exported.to_str().unwrap(),
        "--deploy",
    ]);
    assert!(out.status.success());
    assert!(exported.metadata().unwrap().len() > 1000);

    // A probe whose budget is the trial's data limit (LibTorch allocates outside Rust).
    let out = run(&[
        "probe",
        "--profile",
        profile.to_str().unwrap(),
        "--models",
        "target",
        "--device",
        "libtorch:cpu",
        "--memory-limit",
        "1GiB",
        "--max-batch",
        "64",
        "--steps",
        "1",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
}

/// Trains `kind` for 4 SGD steps (batch 8, T0) on `B2` and returns every tensor by name,
/// BN running statistics included.
fn train_steps<B2: burn::tensor::backend::AutodiffBackend>(
    kind: repopt_tui::model::ModelKind,
    device: &B2::Device,
) -> Vec<(String, Vec<f32>)> {
    use repopt_tui::model::{Classifier, HsNet, ModelKind, RepVggNet};
    fn go<B2: burn::tensor::backend::AutodiffBackend, M>(
        mut model: M,
        device: &B2::Device,
    ) -> Vec<(String, Vec<f32>)>
    where
        M: burn::module::AutodiffModule<B2> + Classifier<B2>,
    {
        let mut opt = RepOptimizer::<B2::InnerBackend>::plain(OptimizerConfig::new(
            UpdateRule::official_sgd(),
            0.05,
        ));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..4 {
            let x: Vec<f32> = (0..8 * 3 * 16 * 16)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let y: Vec<i64> = (0..8).map(|_| rng.random_range(0..4)).collect();
            let x = Tensor::<B2, 4>::from_data(TensorData::new(x, [8, 3, 16, 16]), device);
            let y = Tensor::<B2, 1, Int>::from_data(TensorData::new(y, [8]), device);
            let loss = cross_entropy(model.logits(x, true), y, 0.1);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(model, grads, 0.05).0;
        }
        named_tensors::<B2, _>(&model)
            .into_iter()
            .map(|(n, d)| (n, d.to_vec().unwrap()))
            .collect()
    }
    let v = variant("T0").unwrap();
    match kind {
        ModelKind::RepVgg => go(RepVggNet::<B2>::init(&v, 4, 1, device), device),
        ModelKind::Hs => go(HsNet::<B2>::init(&v, 4, 1, device), device),
        _ => go(TargetNet::<B2>::init(&v, 4, 1, device), device),
    }
}

/// The training-mode blocks LibTorch runs as torch graphs (conv, BN with running statistics,
/// ReLU; RepVGG's three branches; HS's scales) against burn's own formulas on Flex, which the
/// PyTorch fixtures and the CSLA equivalence check: the same weights after 4 steps. Both sides
/// are f32 with different summation orders (measured: ≤ 2e-5, on near-zero BN biases); the bugs
/// this must catch move tensors by far more (biased running variance: ~3%; a wrong momentum or a
/// missing branch: O(1)).
#[test]
fn torch_blocks_train_as_burns_formulas_do() {
    use repopt_tui::model::ModelKind;
    for kind in [ModelKind::Target, ModelKind::RepVgg, ModelKind::Hs] {
        let flex = train_steps::<Autodiff<burn::backend::Flex>>(kind, &Default::default());
        let torch = train_steps::<AB>(kind, &CPU);
        assert_eq!(flex.len(), torch.len());
        let mut worst = (0.0f64, String::new());
        for ((name, a), (_, b)) in flex.iter().zip(&torch) {
            let d = rel_l2(b, a);
            if d > worst.0 {
                worst = (d, name.clone());
            }
        }
        eprintln!(
            "{kind:?}: largest difference {:.2e} at {}",
            worst.0, worst.1
        );
        assert!(worst.0 < 1e-4, "{kind:?}: {:e} at {}", worst.0, worst.1);
    }
}
