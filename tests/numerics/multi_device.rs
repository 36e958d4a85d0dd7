//! Data parallelism through the same code path as GPU runs, with two replicas on the CPU device.

use crate::common;

use burn::backend::{Autodiff, Flex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repopt_tui::data::Batch;
use repopt_tui::model::params::named_tensors;
use repopt_tui::model::{DeployNet, variant};
use repopt_tui::optim::{OptimizerConfig, RepOptimizer, UpdateRule};
use repopt_tui::train::replicas::{Replica, forward_backward, param_ids};

type B = Autodiff<Flex>;

fn batch(images: &[f32], labels: &[i64], n: usize, res: usize) -> Batch {
    Batch {
        images: images.to_vec(),
        labels: labels.to_vec(),
        shape: [n, 3, res, res],
        iter: 0,
        indices: (0..n).collect(),
    }
}

/// Trains the BN-free deploy-form model for `steps` steps on `world` devices, global batch 8.
fn train(world: usize, steps: usize) -> Vec<(String, Vec<f32>)> {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let (res, global, classes) = (16, 8, 4);
    let mut model = DeployNet::<B>::init(&v, classes, 3, &device);
    let mut replicas: Vec<Replica<B, DeployNet<B>>> = (1..world)
        .map(|r| {
            Replica::new(
                DeployNet::init(&v, classes, 100 + r as u64, &device),
                device,
            )
        })
        .collect();
    let ids = param_ids::<B, _>(&model);
    let mut opt =
        RepOptimizer::<Flex>::plain(OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..steps {
        let per = 3 * res * res;
        let images: Vec<f32> = (0..global * per)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let labels: Vec<i64> = (0..global)
            .map(|_| rng.random_range(0..classes as i64))
            .collect();
        let shard = global / world;
        let shards = (0..world)
            .map(|r| {
                batch(
                    &images[r * shard * per..(r + 1) * shard * per],
                    &labels[r * shard..(r + 1) * shard],
                    shard,
                    res,
                )
            })
            .collect();
        let out = forward_backward(&model, &device, &mut replicas, &ids, shards, 0.1, classes);
        assert_eq!(out.images, global);
        model = opt.step(model, out.grads, 0.05).0;
    }
    named_tensors::<B, _>(&model)
        .into_iter()
        .map(|(n, d)| (n, d.to_vec().unwrap()))
        .collect()
}

#[test]
fn two_devices_equal_one_device_with_the_same_global_batch_without_bn() {
    let one = train(1, 6);
    let two = train(2, 6);
    let four = train(4, 6);
    for (((name, a), (_, b)), (_, c)) in one.iter().zip(&two).zip(&four) {
        let d2 = common::rel_l2(b, a);
        let d4 = common::rel_l2(c, a);
        assert!(
            d2 < 1e-5 && d4 < 1e-5,
            "{name}: 2 devices {d2:e}, 4 devices {d4:e}"
        );
    }
    // And training moved the weights (the comparison is not vacuous).
    let init = DeployNet::<B>::init(&variant("T0").unwrap(), 4, 3, &Default::default());
    let moved = named_tensors::<B, _>(&init)
        .into_iter()
        .zip(&one)
        .map(|((_, before), (_, after))| common::rel_l2(after, &before.to_vec::<f32>().unwrap()))
        .fold(0.0, f64::max);
    assert!(moved > 1e-2, "the weights moved by {moved:e}");
}

#[test]
fn a_profile_with_two_cpu_devices_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("dp.ron");
    std::fs::write(
        &profile,
        r#"(
    kind: Target,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 256, synthetic_val: 64, synthetic_seed: 3),
    recipe: (epochs: 3, batch_size: 8, lr: 0.05, lr_scaling: false, optimizer: Sgd(momentum: 0.9, nesterov: true),
             weight_decay: 4e-5, augment: CifarStandard, workers: 1),
    devices: [Cpu, Cpu],
    scales: "SCALES",
    log_every: 4,
)"#
        .replace("SCALES", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/t0-scales.ron")),
    )
    .unwrap();
    let runs = tmp.path().join("runs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_repopt-tui"))
        .args([
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--run-id",
            "dp",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("on cpu,cpu") && stdout.contains("of 8 images × 2 devices"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(runs.join("dp/events.jsonl")).unwrap();
    assert!(
        text.contains("\"devices\":[\"cpu\",\"cpu\"]") && text.contains("\"kind\":\"finished\"")
    );
}
