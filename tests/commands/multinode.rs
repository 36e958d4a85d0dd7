//! Multi-node jobs on loopback (README, "Multi-node"): two processes of the binary as two nodes
//! train one run that only node 0 writes, stop and resume together, and end together when a
//! node dies or never joins; bad layouts are refused naming the value.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_repopt-tui");

/// A T0 Target profile on synthetic data, 16 iterations of 8 images per epoch on one CPU.
fn profile(dir: &Path, name: &str, epochs: u32, devices: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: Target,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 256, synthetic_val: 64, synthetic_seed: 3),
    recipe: (epochs: {epochs}, batch_size: 8, lr: 0.05, lr_scaling: false, optimizer: Sgd(momentum: 0.9, nesterov: true),
             weight_decay: 4e-5, augment: CifarStandard, workers: 1),
    devices: [{devices}],
    scales: "{}",
    log_every: 4,
)"#,
            common::fixture("t0-scales.ron").display()
        ),
    )
    .unwrap();
    path
}

fn node(profile: &Path, runs: &Path, rank: u32, port: u16, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["--profile", profile.to_str().unwrap()])
        .args(["--runs-dir", runs.to_str().unwrap()])
        .args(["--nodes", "2", "--node-rank", &rank.to_string()])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Both nodes with the same arguments; their outputs, by rank.
fn job(profile: &Path, runs: &Path, extra: &[&str]) -> [Output; 2] {
    let port = common::free_port_block(5);
    let n0 = node(profile, runs, 0, port, extra);
    let n1 = node(profile, runs, 1, port, extra);
    [
        n0.wait_with_output().unwrap(),
        n1.wait_with_output().unwrap(),
    ]
}

fn events(runs: &Path, id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(runs.join(id).join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn multinode_two_nodes_train_stop_and_resume_as_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "mn", 2, "Cpu");
    let runs = tmp.path().join("runs");
    let extra = ["--run-id", "mn", "--collective-timeout", "60"];
    // Both stop after 20 iterations: epoch 2, iteration 4.
    let [o0, o1] = job(&p, &runs, &[&extra[..], &["--stop-after", "20"]].concat());
    assert!(
        o0.status.success() && o1.status.success(),
        "{}\n---\n{}",
        text(&o0),
        text(&o1)
    );
    assert!(
        text(&o0).contains("stopped (stop-after) at epoch 2 iteration 4; checkpoint"),
        "{}",
        text(&o0)
    );
    assert!(
        text(&o1).contains(
            "[mn node 1] stopped (stop-after) at epoch 2 iteration 4; node 0 writes the checkpoint"
        ),
        "{}",
        text(&o1)
    );
    // Both resume from node 0's checkpoint at the same iteration and finish.
    let [o0, o1] = job(&p, &runs, &[&extra[..], &["--resume"]].concat());
    assert!(
        o0.status.success() && o1.status.success(),
        "{}\n---\n{}",
        text(&o0),
        text(&o1)
    );
    for o in [&o0, &o1] {
        assert!(text(o).contains("at epoch 2 iteration 4"), "{}", text(o));
    }
    assert!(
        text(&o1).contains("[mn node 1] finished in")
            && text(&o1).contains("node 0 writes the run directory")
    );
    // One run directory, written by node 0 only: one `started` per process of node 0.
    let names: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mn"]);
    let ev = events(&runs, "mn");
    let kinds: Vec<&str> = ev.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "started").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "eval").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"finished"));
    // Every step event: the job's throughput and each node's own.
    let steps: Vec<_> = ev.iter().filter(|e| e["kind"] == "step").collect();
    assert_eq!(steps.len(), 8);
    for s in &steps {
        let per = s["rank_images_per_s"].as_array().unwrap();
        assert_eq!(per.len(), 2);
        assert!(per.iter().all(|v| v.as_f64().unwrap() > 0.0), "{s}");
        assert!(s["all_reduce_ms"].as_f64().unwrap() >= 0.0);
    }
    // The global batch is 2 × 8: each epoch has 256 / 16 = 16 iterations.
    assert_eq!(ev[0]["iters_per_epoch"], 16);
    assert!(runs.join("mn/model.safetensors").is_file());
}

#[test]
fn multinode_a_killed_node_ends_the_job_with_a_message_and_the_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "kill", 400, "Cpu");
    let runs = tmp.path().join("runs");
    let port = common::free_port_block(5);
    let extra = ["--run-id", "kill", "--collective-timeout", "20"];
    let mut n0 = node(&p, &runs, 0, port, &extra);
    let mut n1 = node(&p, &runs, 1, port, &extra);
    // Wait for the first checkpoint (end of epoch 1), then kill node 1.
    let start = Instant::now();
    let events_file = runs.join("kill/events.jsonl");
    while !std::fs::read_to_string(&events_file)
        .is_ok_and(|t| t.contains("\"kind\":\"checkpoint\""))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint within 120 s"
        );
        assert!(n0.try_wait().unwrap().is_none(), "node 0 ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    n1.kill().unwrap();
    n1.wait().unwrap();
    let killed = Instant::now();
    let out = loop {
        if n0.try_wait().unwrap().is_some() {
            break n0.wait_with_output().unwrap();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "node 0 still runs 40 s after node 1 died"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("node 1")
            && ["is gone", "no answer", "closed the connection"]
                .iter()
                .any(|m| t.contains(m)),
        "{t}"
    );
    assert!(
        t.contains("Last checkpoint:") && t.contains("--resume --run-id kill"),
        "{t}"
    );
    let ev = events(&runs, "kill");
    assert_eq!(ev.last().unwrap()["kind"], "failed");
    let ckpt = ev.iter().rev().find(|e| e["kind"] == "checkpoint").unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let c = repopt_tui::train::checkpoint::read(&runs.join("kill").join(ckpt)).unwrap();
    assert!(c.state.global_iter >= 16);
}

#[test]
fn multinode_bad_layouts_and_missing_nodes_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "bad", 1, "Cpu");
    let runs = tmp.path().join("runs");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "--profile",
                p.to_str().unwrap(),
                "--runs-dir",
                runs.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        text(&out)
    };
    let t = run(&[
        "--nodes",
        "2",
        "--node-rank",
        "2",
        "--coordinator",
        "127.0.0.1:29500",
    ]);
    assert!(t.contains("--node-rank 2 is not below --nodes 2"), "{t}");
    let t = run(&[
        "--nodes",
        "2",
        "--node-rank",
        "0",
        "--coordinator",
        "127.0.0.1",
    ]);
    assert!(
        t.contains("--coordinator \"127.0.0.1\" is not HOST:PORT"),
        "{t}"
    );
    let t = run(&[
        "--nodes",
        "2",
        "--node-rank",
        "1",
        "--coordinator",
        "127.0.0.1:1",
        "--resume",
    ]);
    assert!(t.contains("needs --run-id"), "{t}");
    // Node 1 never comes: node 0 gives up after the timeout, saying so.
    let port = common::free_port_block(5);
    let start = Instant::now();
    let t = run(&[
        "--nodes",
        "2",
        "--node-rank",
        "0",
        "--coordinator",
        &format!("127.0.0.1:{port}"),
        "--collective-timeout",
        "2",
        "--run-id",
        "alone",
    ]);
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(
        t.contains("joining the 2-node job")
            && t.contains("no answer from the other nodes within 2 s"),
        "{t}"
    );
    assert_eq!(events(&runs, "alone").last().unwrap()["kind"], "failed");
    // Nodes whose profiles name different devices.
    let two = profile(tmp.path(), "two", 1, "Cpu, Cpu");
    let port = common::free_port_block(5);
    let n0 = node(
        &p,
        &runs,
        0,
        port,
        &["--run-id", "devices", "--collective-timeout", "60"],
    );
    let n1 = node(
        &two,
        &runs,
        1,
        port,
        &["--run-id", "devices", "--collective-timeout", "60"],
    );
    for out in [
        n0.wait_with_output().unwrap(),
        n1.wait_with_output().unwrap(),
    ] {
        let t = text(&out);
        assert!(!out.status.success());
        assert!(
            t.contains("node 1's profile has devices [cpu,cpu], node 0's has [cpu]"),
            "{t}"
        );
    }
}

#[test]
fn multinode_a_signal_on_one_node_stops_every_node_after_the_same_iteration() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "sig", 400, "Cpu");
    let runs = tmp.path().join("runs");
    let port = common::free_port_block(5);
    let extra = ["--run-id", "sig", "--collective-timeout", "30"];
    let mut n0 = node(&p, &runs, 0, port, &extra);
    let n1 = node(&p, &runs, 1, port, &extra);
    let start = Instant::now();
    let events_file = runs.join("sig/events.jsonl");
    while !std::fs::read_to_string(&events_file).is_ok_and(|t| t.contains("\"kind\":\"step\"")) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no step within 120 s"
        );
        assert!(n0.try_wait().unwrap().is_none(), "node 0 ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM to node 1 only (as `kill` on one machine would).
    // SAFETY: sending a signal to a child process this test started.
    assert_eq!(unsafe { libc::kill(n1.id() as i32, libc::SIGTERM) }, 0);
    let (o0, o1) = (
        n0.wait_with_output().unwrap(),
        n1.wait_with_output().unwrap(),
    );
    assert!(
        o0.status.success() && o1.status.success(),
        "{}\n---\n{}",
        text(&o0),
        text(&o1)
    );
    let at = |t: &str| -> String {
        let i = t
            .find("stopped (SIGTERM) at ")
            .unwrap_or_else(|| panic!("{t}"));
        t[i..].split(';').next().unwrap().to_string()
    };
    assert_eq!(at(&text(&o0)), at(&text(&o1)));
    let ev = events(&runs, "sig");
    let stopped = ev.iter().find(|e| e["kind"] == "stopped").unwrap();
    assert_eq!(stopped["reason"], "SIGTERM");
    assert!(stopped["checkpoint"].is_string(), "{stopped}");
}

#[test]
fn multinode_node_1_ends_when_node_0_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "kill0", 400, "Cpu");
    let runs = tmp.path().join("runs");
    let port = common::free_port_block(5);
    let extra = ["--run-id", "kill0", "--collective-timeout", "20"];
    let mut n0 = node(&p, &runs, 0, port, &extra);
    let mut n1 = node(&p, &runs, 1, port, &extra);
    let start = Instant::now();
    let events_file = runs.join("kill0/events.jsonl");
    while !std::fs::read_to_string(&events_file).is_ok_and(|t| t.contains("\"kind\":\"step\"")) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no step within 120 s"
        );
        assert!(n1.try_wait().unwrap().is_none(), "node 1 ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    n0.kill().unwrap();
    n0.wait().unwrap();
    let killed = Instant::now();
    while n1.try_wait().unwrap().is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "node 1 still runs 40 s after node 0 died"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = n1.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("[kill0 node 1] FAILED") && t.contains("node 0"),
        "{t}"
    );
}
