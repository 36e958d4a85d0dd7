//! PyTorch interop, checked against PyTorch itself: the fixtures in `tests/fixtures/pth` were
//! written by `tests/fixtures/gen_pth_fixtures.py` (plain PyTorch, official names and semantics),
//! and the official B1 scales file in `../shared/data/official-scales`.

use std::collections::HashMap;

use crate::common::{fixture, rel_l2, shared_data};
use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use repopt_tui::interop::{ImportError, import_scales, read_pth};
use repopt_tui::model::loss::cross_entropy;
use repopt_tui::model::params::named_tensors;
use repopt_tui::model::{HsNet, RepVggNet, TargetNet, variant};
use repopt_tui::optim::{GradMults, OptimizerConfig, RepOptimizer, UpdateRule};
use repopt_tui::train::weights::load_weights as load_state_dict;

type B = Flex;
type AB = Autodiff<Flex>;

fn io() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_pth(&fixture("pth/t0-io.pth"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, (t.shape, t.values)))
        .collect()
}

fn tensor4<Bk: burn::tensor::backend::Backend>(
    io: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    key: &str,
) -> Tensor<Bk, 4> {
    let (shape, values) = io[key].clone();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

#[test]
fn official_b1_scales_import_and_masks_match_the_raw_values() {
    let path = shared_data().join("official-scales/RepOpt-VGG-B1-scales.pth");
    let v = variant("B1").unwrap();
    let profile = import_scales(&path, &v).unwrap();
    assert_eq!(profile.blocks.len(), 28);
    assert_eq!(
        profile.negative_count(),
        156,
        "negative values in the official B1 scales"
    );
    profile.check(&v).unwrap();

    // Raw values straight from the file, and the mask formula written out here.
    let raw = read_pth(&path).unwrap();
    let val = |key: &str, c: usize| raw[key].values[c];
    let mut masks = GradMults::<B>::from_scales(&profile, &v, 2, &Default::default());
    assert_eq!(masks.len(), 28, "every block's 3x3 conv has a mask");
    let mut at = |name: &str, cin: usize, o: usize, i: usize, p: usize, q: usize| -> f32 {
        let m: Vec<f32> = masks
            .get(&format!("{name}.conv.weight"))
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        m[((o * cin + i) * 3 + p) * 3 + q]
    };
    // stage0 (3 → 64, no identity), output 5, input 2.
    let (s, t) = (
        val("stage0.scale_conv.weight", 5),
        val("stage0.scale_1x1.weight", 5),
    );
    assert_eq!(at("stage0", 3, 5, 2, 0, 0), s * s);
    assert_eq!(at("stage0", 3, 5, 2, 1, 1), s * s + t * t);
    // stage1.3 (128 → 128, identity) has negative s values: channel of the minimum.
    let key = "stage1.3.scale_conv.weight";
    let o = (0..128)
        .min_by(|&a, &b| val(key, a).total_cmp(&val(key, b)))
        .unwrap();
    let (s, t) = (val(key, o), val("stage1.3.scale_1x1.weight", o));
    assert!(s < -1.0, "the official file has s = {s} here");
    assert_eq!(
        at("stage1.3", 128, o, o, 1, 1),
        s * s + t * t + 1.0,
        "identity term is +1 whatever u is"
    );
    assert_eq!(at("stage1.3", 128, o, (o + 1) % 128, 1, 1), s * s + t * t);
    assert_eq!(at("stage1.3", 128, o, o, 2, 1), s * s);
    // stage4.0 (stride 2, 512 → 2048): no identity term on the diagonal.
    let (s, t) = (
        val("stage4.0.scale_conv.weight", 7),
        val("stage4.0.scale_1x1.weight", 7),
    );
    assert_eq!(at("stage4.0", 512, 7, 7, 1, 1), s * s + t * t);
}

#[test]
fn other_official_files_import_for_their_variant_only() {
    for name in ["B2", "L1", "L2"] {
        let path = shared_data().join(format!("official-scales/RepOpt-VGG-{name}-scales.pth"));
        let profile = import_scales(&path, &variant(name).unwrap()).unwrap();
        assert_eq!(profile.variant, name);
    }
    let e = import_scales(
        &shared_data().join("official-scales/RepOpt-VGG-B2-scales.pth"),
        &variant("B1").unwrap(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("has 160 values, variant B1 needs 128"),
        "{e}"
    );
}

#[test]
fn importer_rejects_missing_renamed_and_short_keys_naming_them() {
    let v = variant("T0").unwrap();
    import_scales(&fixture("pth/t0-scales.pth"), &v).unwrap();
    let e = import_scales(&fixture("pth/t0-scales-missing.pth"), &v).unwrap_err();
    assert!(matches!(e, ImportError::MissingKey { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("missing key 'stage2.1.scale_identity.weight'"),
        "{e}"
    );
    let e = import_scales(&fixture("pth/t0-scales-renamed.pth"), &v)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'stage2.1.scale_identity.weight'")
            && e.contains("stage2.1.scale_idnetity.weight"),
        "{e}"
    );
    let e = import_scales(&fixture("pth/t0-scales-length.pth"), &v)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'stage3.0.scale_conv.weight' has 31 values, variant T0 needs 32"),
        "{e}"
    );
    let e = import_scales(&fixture("pth/t0-scales.pth"), &variant("B1").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs 64") || e.contains("missing key"), "{e}");
}

#[test]
fn a_file_that_is_not_a_pytorch_archive_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scales.pth");
    std::fs::write(&path, "not a checkpoint").unwrap();
    let e = import_scales(&path, &variant("T0").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scales.pth") && e.contains("not a readable PyTorch state dict"),
        "{e}"
    );
}

#[test]
fn forward_passes_equal_pytorch_for_loaded_official_checkpoints() {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let io = io();
    let x = tensor4::<B>(&io, "input");

    let target = load_state_dict(
        TargetNet::<B>::init(&v, 10, 0, &device),
        &fixture("pth/t0-target.pth"),
        "target",
        &device,
    )
    .unwrap();
    let out: Vec<f32> = target
        .forward(x.clone(), false)
        .into_data()
        .to_vec()
        .unwrap();
    assert!(rel_l2(&out, &io["target_logits"].1) < 1e-5, "target logits");

    let repvgg = load_state_dict(
        RepVggNet::<B>::init(&v, 10, 0, &device),
        &fixture("pth/t0-repvgg.pth"),
        "repvgg",
        &device,
    )
    .unwrap();
    let out: Vec<f32> = repvgg
        .forward(x.clone(), false)
        .into_data()
        .to_vec()
        .unwrap();
    assert!(rel_l2(&out, &io["repvgg_logits"].1) < 1e-5, "repvgg logits");

    let hs = load_state_dict(
        HsNet::<B>::init(&v, 100, 0, &device),
        &fixture("pth/t0-hs.pth"),
        "hs",
        &device,
    )
    .unwrap();
    let out: Vec<f32> = hs.forward(x, false).into_data().to_vec().unwrap();
    assert!(rel_l2(&out, &io["hs_logits"].1) < 1e-5, "hs logits");
}

#[test]
fn loading_a_checkpoint_into_the_wrong_model_names_the_tensors() {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let e = load_state_dict(
        TargetNet::<B>::init(&v, 10, 0, &device),
        &fixture("pth/t0-repvgg.pth"),
        "target",
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("missing tensor(s) the model expects: stage0.conv.weight")
            && e.contains("stage0.conv_3x3.weight"),
        "{e}"
    );
    let e = load_state_dict(
        TargetNet::<B>::init(&v, 100, 0, &device),
        &fixture("pth/t0-target.pth"),
        "target",
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("'linear.weight' has shape [10, 64], the model expects [100, 64]"),
        "{e}"
    );
}

#[test]
fn repoptimizer_sgd_trajectory_equals_the_pytorch_reference() {
    // Both implementations of the update: fused host loops (CPU) and tensor operations (GPU).
    for tensor_ops in [false, true] {
        sgd_trajectory(tensor_ops);
    }
}

fn sgd_trajectory(tensor_ops: bool) {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let io = io();
    let mut model = load_state_dict(
        TargetNet::<AB>::init(&v, 10, 0, &device),
        &fixture("pth/t0-target.pth"),
        "target",
        &device,
    )
    .unwrap();
    let scales = import_scales(&fixture("pth/t0-scales.pth"), &v).unwrap();
    let masks = GradMults::from_scales(&scales, &v, 2, &device);
    let mut opt = RepOptimizer::<B>::new(
        OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5),
        masks,
    );
    if tensor_ops {
        opt = opt.with_tensor_ops();
    }
    for step in 0..5 {
        let x = tensor4::<AB>(&io, &format!("sgd_x{step}"));
        let labels: Vec<i64> = io[&format!("sgd_y{step}")]
            .1
            .iter()
            .map(|&y| y as i64)
            .collect();
        let y = Tensor::<AB, 1, Int>::from_data(TensorData::new(labels, [8]), &device);
        let loss = cross_entropy(model.forward(x, true), y, 0.1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let got = loss.into_scalar();
        let expected = io[&format!("sgd_loss{step}")].1[0];
        let rel = (got - expected).abs() / expected;
        eprintln!("step {step}: loss {got} vs PyTorch (f64) {expected}: {rel:e}");
        assert!(
            rel < 1e-5,
            "step {step}: loss {got} vs PyTorch (f64) {expected}"
        );
        model = opt.step(model, grads, 0.05).0;
    }
    let reference = read_pth(&fixture("pth/t0-target-after-sgd.pth")).unwrap();
    for (name, data) in named_tensors::<AB, _>(&model) {
        let ours: Vec<f32> = data.to_vec().unwrap();
        let d = rel_l2(&ours, &reference[&name].values);
        eprintln!("{name}: {d:e}");
        assert!(
            d < 1e-5,
            "{name}: relative difference {d:e} from PyTorch (f64)"
        );
    }
}
