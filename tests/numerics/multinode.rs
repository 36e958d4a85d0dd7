//! Data parallel across processes (src/dist): two processes on loopback, one CPU device each,
//! train exactly as one process with two devices. The test binary starts itself twice as the
//! two nodes (`multinode_node`, ignored unless run so).

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repopt_tui::data::Batch;
use repopt_tui::dist::{Collective, DistOptions};
use repopt_tui::model::params::named_tensors;
use repopt_tui::model::{DeployNet, variant};
use repopt_tui::optim::{OptimizerConfig, RepOptimizer, UpdateRule};
use repopt_tui::train::collective::{LocalStep, broadcast_model, sync_step};
use repopt_tui::train::replicas::{Replica, forward_backward, param_ids};

use crate::common;

type B = Autodiff<Flex>;
const STEPS: usize = 6;
const GLOBAL: usize = 8;
const RES: usize = 16;
const CLASSES: usize = 4;

/// The global batches of the reference (`multi_device`): the same random images and labels.
fn batches() -> Vec<(Vec<f32>, Vec<i64>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let per = 3 * RES * RES;
    (0..STEPS)
        .map(|_| {
            let images = (0..GLOBAL * per)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let labels = (0..GLOBAL)
                .map(|_| rng.random_range(0..CLASSES as i64))
                .collect();
            (images, labels)
        })
        .collect()
}

fn shard(images: &[f32], labels: &[i64], rank: usize, world: usize) -> Batch {
    let (per, n) = (3 * RES * RES, GLOBAL / world);
    Batch {
        images: images[rank * n * per..(rank + 1) * n * per].to_vec(),
        labels: labels[rank * n..(rank + 1) * n].to_vec(),
        shape: [n, 3, RES, RES],
        iter: 0,
        indices: (0..n).collect(),
    }
}

fn optimizer() -> RepOptimizer<Flex> {
    RepOptimizer::<Flex>::plain(OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5))
}

fn flat(model: &DeployNet<B>) -> Vec<(String, Vec<f32>)> {
    named_tensors::<B, _>(model)
        .into_iter()
        .map(|(n, d)| (n, d.to_vec().unwrap()))
        .collect()
}

/// One process, two devices (replicas), the BN-free deploy model.
fn one_process_two_devices() -> Vec<(String, Vec<f32>)> {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let mut model = DeployNet::<B>::init(&v, CLASSES, 3, &device);
    let mut replicas = vec![Replica::new(
        DeployNet::<B>::init(&v, CLASSES, 101, &device),
        device,
    )];
    let ids = param_ids::<B, _>(&model);
    let mut opt = optimizer();
    for (images, labels) in batches() {
        let shards = (0..2).map(|r| shard(&images, &labels, r, 2)).collect();
        let out = forward_backward(&model, &device, &mut replicas, &ids, shards, 0.1, CLASSES);
        model = opt.step(model, out.grads, 0.05).0;
    }
    flat(&model)
}

/// One node of the two-process job (started by the test below through the environment).
#[test]
#[ignore = "a node of multinode_two_processes_equal_one_process_with_two_devices"]
fn multinode_node() {
    let rank: u32 = std::env::var("MULTINODE_RANK").unwrap().parse().unwrap();
    let port = std::env::var("MULTINODE_PORT").unwrap();
    let out = std::env::var("MULTINODE_OUT").unwrap();
    let layout = DistOptions {
        nodes: 2,
        node_rank: rank,
        coordinator: format!("127.0.0.1:{port}"),
        data_port: None,
        timeout: Duration::from_secs(60),
    }
    .check()
    .unwrap();
    let c = Collective::join(layout, Default::default()).unwrap();
    let device = Default::default();
    let v = variant("T0").unwrap();
    // Node 1 starts from another initialization: the broadcast must make it node 0's.
    let seed = if rank == 0 { 3 } else { 77 };
    let mut model =
        broadcast_model::<B, _>(&c, DeployNet::<B>::init(&v, CLASSES, seed, &device)).unwrap();
    let mut opt = optimizer();
    for (images, labels) in batches() {
        let batch = shard(&images, &labels, rank as usize, 2);
        let images = batch.len();
        let out = forward_backward(
            &model,
            &device,
            &mut [],
            &Default::default(),
            vec![batch],
            0.1,
            CLASSES,
        );
        let local = LocalStep {
            loss_sum: out.loss_sum,
            correct: out.correct,
            images,
            compute_s: 0.0,
            stop: 0,
        };
        let (m, job) = sync_step::<B, _>(&c, model, out.grads, local).unwrap();
        assert_eq!(job.images, GLOBAL);
        model = opt.step(m, job.grads, 0.05).0;
    }
    let json = serde_json::to_string(&flat(&model)).unwrap();
    std::fs::write(out, json).unwrap();
    c.finish();
}

#[test]
fn multinode_two_processes_equal_one_process_with_two_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port_block(5);
    let exe = std::env::current_exe().unwrap();
    let nodes: Vec<_> = (0..2)
        .map(|rank| {
            std::process::Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "multinode::multinode_node",
                    "--nocapture",
                ])
                .env("MULTINODE_RANK", rank.to_string())
                .env("MULTINODE_PORT", port.to_string())
                .env("MULTINODE_OUT", tmp.path().join(format!("node{rank}.json")))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let reference = one_process_two_devices();
    for (rank, child) in nodes.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "node {rank}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let read = |rank: usize| -> Vec<(String, Vec<f32>)> {
        let text = std::fs::read_to_string(tmp.path().join(format!("node{rank}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let (n0, n1) = (read(0), read(1));
    assert_eq!(n0.len(), reference.len());
    for (((name, a), (_, b)), (_, r)) in n0.iter().zip(&n1).zip(&reference) {
        assert_eq!(a, b, "{name}: the two nodes differ");
        let d = common::rel_l2(a, r);
        assert!(
            d < 1e-5,
            "{name}: 2 processes against 1 process × 2 devices: {d:e}"
        );
    }
    // Training moved the weights (the comparison is not vacuous).
    let init = DeployNet::<B>::init(&variant("T0").unwrap(), CLASSES, 3, &Default::default());
    let moved = flat(&init)
        .iter()
        .zip(&reference)
        .map(|((_, before), (_, after))| common::rel_l2(after, before))
        .fold(0.0, f64::max);
    assert!(moved > 1e-2, "the weights moved by {moved:e}");
}
