//! `repopt-tui models`.

use std::process::ExitCode;

use clap::Args;

use crate::model::{ModelKind, VARIANTS};

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Classes of the target, RepVGG and deploy models (ImageNet: 1000).
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// Classes of the HS model (CIFAR-100: 100).
    #[arg(long, default_value_t = 100)]
    hs_classes: usize,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    crate::outln!(
        "{:<7} {:>16} {:>6} {:>14} {:>14} {:>14} {:>14}",
        "variant",
        "blocks",
        "a/b",
        "target",
        "HS",
        "RepVGG",
        "deploy"
    );
    for v in VARIANTS {
        let count = |kind, classes| {
            crate::model::variant::group_thousands(v.parameter_count(kind, classes))
        };
        crate::outln!(
            "{:<7} {:>16} {:>6} {:>14} {:>14} {:>14} {:>14}",
            v.name,
            format!("{:?}", v.blocks),
            format!("{}/{}", v.a, v.b),
            count(ModelKind::Target, args.classes),
            count(ModelKind::Hs, args.hs_classes),
            count(ModelKind::RepVgg, args.classes),
            count(ModelKind::Deploy, args.classes),
        );
    }
    crate::outln!(
        "parameters: target, RepVGG and deploy with {} classes, HS with {}; T0 and T1 are small variants for tests and CPU demos",
        args.classes,
        args.hs_classes
    );
    Ok(ExitCode::SUCCESS)
}
