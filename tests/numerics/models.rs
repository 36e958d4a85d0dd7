//! Model structure: parameter counts, official names, RepVGG's structural re-parameterization.

use burn::backend::Flex;
use burn::module::Module;
use burn::tensor::{Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repopt_tui::model::fuse::to_deploy;
use repopt_tui::model::layers::BatchNorm2d;
use repopt_tui::model::params::{named_shapes, parameter_count};
use repopt_tui::model::{DeployNet, HsNet, ModelKind, RepVggNet, TargetNet, variant};

type B = Flex;

#[test]
fn target_parameter_counts_equal_the_published_ones() {
    // DESIGN.md, 1000 classes.
    for (name, expected) in [
        ("A0", 8_313_880),
        ("B1", 51_841_832),
        ("B2", 80_330_536),
        ("L1", 76_037_928),
        ("L2", 118_132_776),
    ] {
        assert_eq!(
            variant(name)
                .unwrap()
                .parameter_count(ModelKind::Target, 1000),
            expected,
            "{name}"
        );
    }
}

#[test]
fn counted_parameters_equal_the_instantiated_modules() {
    let device = Default::default();
    for name in ["T0", "T1", "A0"] {
        let v = variant(name).unwrap();
        let t = TargetNet::<B>::init(&v, 1000, 0, &device);
        assert_eq!(
            parameter_count::<B, _>(&t),
            v.parameter_count(ModelKind::Target, 1000),
            "{name} target"
        );
        let h = HsNet::<B>::init(&v, 100, 0, &device);
        assert_eq!(
            parameter_count::<B, _>(&h),
            v.parameter_count(ModelKind::Hs, 100),
            "{name} hs"
        );
        let r = RepVggNet::<B>::init(&v, 1000, 0, &device);
        assert_eq!(
            parameter_count::<B, _>(&r),
            v.parameter_count(ModelKind::RepVgg, 1000),
            "{name} repvgg"
        );
        let d = DeployNet::<B>::init(&v, 1000, 0, &device);
        assert_eq!(
            parameter_count::<B, _>(&d),
            v.parameter_count(ModelKind::Deploy, 1000),
            "{name} deploy"
        );
    }
}

#[test]
fn state_dict_names_are_the_official_ones() {
    let device = Default::default();
    let v = variant("T0").unwrap();
    let names: Vec<String> = named_shapes::<B, _>(&HsNet::<B>::init(&v, 100, 0, &device))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for expected in [
        "stage0.conv.weight",
        "stage0.scale_conv.weight",
        "stage0.conv_1x1.weight",
        "stage0.scale_1x1.weight",
        "stage0.bn.weight",
        "stage0.bn.running_var",
        "stage2.1.scale_identity.weight",
        "stage4.0.bn.bias",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "stage2.0.scale_identity.weight"),
        "stride-2 blocks have no identity"
    );
    let shapes = named_shapes::<B, _>(&TargetNet::<B>::init(&v, 10, 0, &device));
    let linear = shapes.iter().find(|(n, _)| n == "linear.weight").unwrap();
    assert_eq!(linear.1, vec![10, 64], "PyTorch layout [out, in]");
    let repvgg: Vec<String> = named_shapes::<B, _>(&RepVggNet::<B>::init(&v, 10, 0, &device))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for expected in [
        "stage1.0.conv_3x3.weight",
        "stage1.0.bn_3x3.running_mean",
        "stage1.0.conv_1x1.weight",
        "stage2.1.bn_identity.weight",
    ] {
        assert!(repvgg.iter().any(|n| n == expected), "{expected} missing");
    }
}

fn randomize_bn(bn: BatchNorm2d<B>, rng: &mut ChaCha8Rng) -> BatchNorm2d<B> {
    let c = bn.weight.dims()[0];
    let device = Default::default();
    let mut draw = |lo: f32, hi: f32| {
        Tensor::<B, 1>::from_data(
            TensorData::new(
                (0..c)
                    .map(|_| rng.random_range(lo..hi))
                    .collect::<Vec<f32>>(),
                [c],
            ),
            &device,
        )
    };
    let (w, b, m, v) = (
        draw(0.5, 1.5),
        draw(-0.5, 0.5),
        draw(-0.3, 0.3),
        draw(0.2, 2.0),
    );
    BatchNorm2d {
        weight: bn.weight.map(|_| w),
        bias: bn.bias.map(|_| b),
        running_mean: burn::module::RunningState::new(m),
        running_var: burn::module::RunningState::new(v),
    }
}

#[test]
fn repvgg_deploy_form_equals_the_training_form_in_eval_mode() {
    let device = Default::default();
    let v = variant("T1").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let model = RepVggNet::<B>::init(&v, 10, 3, &device).map_blocks(|_, mut b| {
        b.bn_3x3 = randomize_bn(b.bn_3x3, &mut rng);
        b.bn_1x1 = randomize_bn(b.bn_1x1, &mut rng);
        b.bn_identity = b.bn_identity.map(|bn| randomize_bn(bn, &mut rng));
        b
    });
    let x = Tensor::<B, 4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let reference: Vec<f32> = model
        .forward(x.clone(), false)
        .into_data()
        .to_vec()
        .unwrap();
    let deploy = to_deploy(model.clone());
    assert_eq!(
        deploy.num_params(),
        v.parameter_count(ModelKind::Deploy, 10)
    );
    let fused: Vec<f32> = deploy.forward(x, false).into_data().to_vec().unwrap();
    let num: f64 = reference
        .iter()
        .zip(&fused)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = reference.iter().map(|a| (*a as f64).powi(2)).sum();
    let rel = (num / den).sqrt();
    assert!(den > 0.0 && rel < 1e-5, "relative difference {rel:e}");
}
