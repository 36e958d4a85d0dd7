//! The events README documents are the events runs write: README's events table is parsed here
//! and, for every kind, the fields it lists must be exactly the JSON keys of that event as
//! serialized (nested ones too: scale statistics, GPU devices). A kind added to the schema
//! without a README row (or the reverse) fails, as does a renamed or undocumented field.

use std::collections::{BTreeMap, BTreeSet};

use repopt_tui::rundir::events::*;
use serde_json::Value;

/// README's events table: kind → (top-level fields, fields of the nested objects).
fn readme_table() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| kind | fields |"));
    assert!(
        lines.next().is_some(),
        "README has no '| kind | fields |' table"
    );
    lines.next(); // |---|---|
    let mut table = BTreeMap::new();
    for line in lines.take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 2, "README events row: {line}");
        let kind = cells[0].trim_matches('`').to_string();
        // Prose after a dash and parenthesized remarks (enum values, units) are not fields.
        let mut text = cells[1].split(" — ").next().unwrap().to_string();
        while let (Some(a), Some(b)) = (text.find(" ("), text.find(')')) {
            if b < a {
                break;
            }
            text.replace_range(a..=b, "");
        }
        let tokens: Vec<(String, bool)> = text
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, t)| t.to_string())
            .zip(
                // whether the token is followed by ':' (it introduces nested fields)
                text.split('`')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 0)
                    .skip(1)
                    .map(|(_, after)| after.trim_start().starts_with(':')),
            )
            .collect();
        let (mut top, mut nested) = (BTreeSet::new(), BTreeSet::new());
        let mut inside = false;
        for (token, opens) in tokens {
            let names: Vec<String> = token
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if inside {
                nested.extend(names);
            } else {
                top.extend(names);
                inside = opens;
            }
        }
        assert!(
            table.insert(kind.clone(), (top, nested)).is_none(),
            "README lists '{kind}' twice"
        );
    }
    table
}

fn stats() -> ScaleStats {
    ScaleStats {
        mean: 1.0,
        std: 0.1,
        min: 0.5,
        max: 1.5,
        negative: 0,
        hist: Histogram {
            lo: 0.5,
            hi: 1.5,
            counts: vec![1, 2],
        },
    }
}

/// One event of every kind, every optional field set.
fn one_of_each() -> Vec<EventBody> {
    vec![
        EventBody::Started(Started {
            run_id: "r".into(),
            run_kind: "target".into(),
            variant: "T0".into(),
            dataset: "synthetic".into(),
            epochs: 1,
            iters_per_epoch: 2,
            batch_size: 3,
            devices: vec!["cpu".into()],
            pid: 4,
            resumed_from: Some("ckpt/x.ckpt".into()),
            profile_path: Some("p.ron".into()),
            nodes: Some(2),
        }),
        EventBody::Step(Step {
            epoch: 0,
            iter: 1,
            global_iter: 1,
            loss: 2.0,
            lr: 0.1,
            images_per_s: 9.0,
            top1: Some(50.0),
            eta_s: Some(3.0),
            rank_images_per_s: Some(vec![40.0, 38.5]),
            all_reduce_ms: Some(12.0),
        }),
        EventBody::Eval(Eval {
            epoch: 0,
            loss: 1.0,
            top1: 50.0,
            top5: 90.0,
            train_loss: Some(1.1),
            train_top1: Some(45.0),
        }),
        EventBody::Scales(ScalesEvent {
            epoch: 0,
            layers: vec![LayerScales {
                name: "stage1.1".into(),
                s: stats(),
                t: stats(),
                u: Some(stats()),
            }],
        }),
        EventBody::Gpu(GpuSample {
            devices: vec![GpuDeviceSample {
                index: 0,
                name: "gpu".into(),
                memory_used_bytes: 1,
                memory_total_bytes: 2,
                utilization: Some(3),
                temperature_c: Some(4),
                power_w: Some(5.0),
                process_memory_bytes: Some(6),
            }],
        }),
        EventBody::Checkpoint(CheckpointEvent {
            epoch: 1,
            global_iter: 2,
            path: "ckpt/e0001-i000000002.ckpt".into(),
            best: true,
        }),
        EventBody::Probe(ProbeResult {
            model: "target".into(),
            variant: "T0".into(),
            resolution: 32,
            device: "cpu".into(),
            memory_limit_bytes: Some(1),
            max_batch: Some(2),
            peak_bytes: Some(3),
            images_per_s_at_32: Some(4.0),
            images_per_s_at_max: Some(5.0),
            max_batch_ceiling: Some(4096),
        }),
        EventBody::Quantize(QuantizeEvent {
            weights: "ckpt/x.ckpt".into(),
            model: "repvgg".into(),
            variant: "T0".into(),
            calibration_images: 64,
            percentile: 99.99,
            fp32_top1: 50.0,
            schemes: vec![QuantizeScheme {
                weights: "per-channel".into(),
                activations: "min/max".into(),
                keep_float: "none".into(),
                top1: 40.0,
                drop: 10.0,
            }],
            layers: vec![QuantizeLayer {
                name: "stage0".into(),
                range_over_std: 6.0,
                error_per_tensor: 0.02,
                error_per_channel: 0.01,
            }],
        }),
        EventBody::Finished(Finished {
            epochs: 1,
            best_top1: Some(50.0),
            final_top1: Some(50.0),
            wall_s: 1.0,
        }),
        EventBody::Stopped(Stopped {
            epoch: 0,
            global_iter: 1,
            reason: "SIGINT".into(),
            checkpoint: Some("ckpt/x.ckpt".into()),
        }),
        EventBody::Failed(Failed {
            message: "m".into(),
        }),
        EventBody::CheckpointFailed(CheckpointFailed {
            epoch: 1,
            global_iter: 2,
            path: "ckpt/x.ckpt".into(),
            error: "disk full".into(),
        }),
    ]
}

/// The `kind` of an event; exhaustive, so a new kind must be added to `one_of_each` too.
fn kind(e: &EventBody) -> &'static str {
    match e {
        EventBody::Started(_) => "started",
        EventBody::Step(_) => "step",
        EventBody::Eval(_) => "eval",
        EventBody::Scales(_) => "scales",
        EventBody::Gpu(_) => "gpu",
        EventBody::Checkpoint(_) => "checkpoint",
        EventBody::Probe(_) => "probe",
        EventBody::Quantize(_) => "quantize",
        EventBody::Finished(_) => "finished",
        EventBody::Stopped(_) => "stopped",
        EventBody::Failed(_) => "failed",
        EventBody::CheckpointFailed(_) => "checkpoint_failed",
    }
}

fn nested_keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                nested_keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| nested_keys(i, out)),
        _ => {}
    }
}

#[test]
fn every_event_kind_has_exactly_the_fields_readme_lists() {
    let table = readme_table();
    let events = one_of_each();
    let kinds: BTreeSet<&str> = events.iter().map(kind).collect();
    assert_eq!(kinds.len(), events.len(), "one event per kind");
    assert_eq!(
        kinds,
        table.keys().map(String::as_str).collect(),
        "README's events table and the schema list the same kinds"
    );
    for body in events {
        let k = kind(&body);
        let json = serde_json::to_value(Event { t: 1.5, body }).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj["kind"], k, "kind tag");
        assert!(obj["t"].is_f64(), "every event has t");
        let (top, nested) = &table[k];
        let keys: BTreeSet<String> = obj
            .keys()
            .filter(|key| *key != "t" && *key != "kind")
            .cloned()
            .collect();
        assert_eq!(&keys, top, "'{k}': README's fields vs the serialized event");
        let mut inner = BTreeSet::new();
        for key in top {
            if obj[key].is_object() || obj[key].is_array() {
                nested_keys(&obj[key], &mut inner);
            }
        }
        assert_eq!(&inner, nested, "'{k}': nested fields");
        // And what was written reads back.
        let back: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), json);
    }
}

#[test]
fn the_readme_parser_sees_nested_fields_and_skips_remarks() {
    let table = readme_table();
    assert!(table["scales"].1.contains("counts"));
    assert!(table["gpu"].1.contains("power_w"));
    assert!(
        !table["started"].0.contains("hyper_search"),
        "enum values are not fields"
    );
    assert!(
        !table["step"].0.contains("log_every"),
        "prose is not a field"
    );
    assert!(table["started"].0.contains("profile_path"));
}
