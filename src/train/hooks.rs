//! What each kind of model adds to the common loop: the HS model's scales (events, `scales.ron`),
//! RepVGG's deploy conversion at the end.

use std::path::Path;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::model::fuse::to_deploy;
use crate::model::kernel_stats::{KernelStatsReport, LayerKernelStats, kernel_stats};
use crate::model::params::named_tensors;
use crate::model::{Classifier, HsNet, ModelKind, RepVggNet, TargetNet, Variant};
use crate::profile::{BlockScales, ScalesProfile};
use crate::rundir::events::{LayerScales, ScalesEvent};
use crate::rundir::scale_stats;

/// Per-kind behaviour of a model the training loop trains.
pub trait TrainModel<B: AutodiffBackend>:
    AutodiffModule<B, InnerModule: Classifier<B::InnerBackend>> + Classifier<B> + Clone
{
    /// HS models: the scales now, in the scales-profile format.
    fn scales(&self, _variant: &str, _source: &str) -> Option<ScalesProfile> {
        None
    }
    /// Extra files at the end of a run (RepVGG: the deploy-converted model).
    fn finish(&self, _run_dir: &Path) -> anyhow::Result<Vec<String>> {
        Ok(vec![])
    }
    /// The model kind's name (`target`, `hs`, `repvgg`).
    fn kind(&self) -> ModelKind;
    /// Per block: the spread of the kernel's centre and surrounding taps (the paper's Table 11).
    fn kernel_stats(&self, variant: &Variant) -> Vec<LayerKernelStats>;
}

impl<B: AutodiffBackend> TrainModel<B> for TargetNet<B> {
    fn kind(&self) -> ModelKind {
        ModelKind::Target
    }
    fn kernel_stats(&self, variant: &Variant) -> Vec<LayerKernelStats> {
        kernel_stats(self, variant)
    }
}

impl<B: AutodiffBackend> TrainModel<B> for HsNet<B> {
    fn kind(&self) -> ModelKind {
        ModelKind::Hs
    }
    fn kernel_stats(&self, variant: &Variant) -> Vec<LayerKernelStats> {
        kernel_stats(self, variant)
    }
    fn scales(&self, variant: &str, source: &str) -> Option<ScalesProfile> {
        let host = |t: burn::tensor::Tensor<B, 1>| -> Vec<f32> {
            t.into_data().convert::<f32>().to_vec().expect("f32")
        };
        let plan = crate::model::variant(variant).ok()?.plan();
        let blocks = self
            .blocks()
            .zip(plan)
            .map(|(b, p)| BlockScales {
                name: p.name,
                s: host(b.scale_conv.weight.val()),
                t: host(b.scale_1x1.weight.val()),
                u: b.scale_identity.as_ref().map(|l| host(l.weight.val())),
            })
            .collect();
        Some(ScalesProfile {
            variant: variant.to_string(),
            source: source.to_string(),
            blocks,
        })
    }
}

impl<B: AutodiffBackend> TrainModel<B> for RepVggNet<B> {
    fn kind(&self) -> ModelKind {
        ModelKind::RepVgg
    }
    fn kernel_stats(&self, variant: &Variant) -> Vec<LayerKernelStats> {
        kernel_stats(self, variant)
    }
    fn finish(&self, run_dir: &Path) -> anyhow::Result<Vec<String>> {
        let deploy = to_deploy(self.valid());
        let path = run_dir.join("deploy.safetensors");
        save_safetensors::<B::InnerBackend, _>(&deploy, &path, "repvgg-deploy")?;
        Ok(vec!["deploy.safetensors".into()])
    }
}

/// Writes a model's tensors with the official PyTorch names as safetensors.
pub fn save_safetensors<B: Backend, M: burn::module::Module<B>>(
    model: &M,
    path: &Path,
    kind: &str,
) -> anyhow::Result<()> {
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("model".to_string(), kind.to_string());
    let bytes = crate::interop::safetensors::to_bytes(&named_tensors::<B, M>(model), meta)
        .with_context(|| format!("cannot serialize the weights for {}", path.display()))?;
    crate::profile::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The `scales` event of an HS model's current scales.
pub fn scales_event(profile: &ScalesProfile, epoch: u32) -> ScalesEvent {
    ScalesEvent {
        epoch,
        layers: profile
            .blocks
            .iter()
            .map(|b| LayerScales {
                name: b.name.clone(),
                s: scale_stats(&b.s, 24),
                t: scale_stats(&b.t, 24),
                u: b.u.as_deref().map(|u| scale_stats(u, 24)),
            })
            .collect(),
    }
}

/// The kernel statistics of the final weights (`kernel_stats.json` in the run directory).
pub fn kernel_stats_report<B: AutodiffBackend, M: TrainModel<B>>(
    model: &M,
    variant: &Variant,
) -> KernelStatsReport {
    KernelStatsReport {
        weights: "model.safetensors".into(),
        kind: model.kind().name().into(),
        variant: variant.name.into(),
        layers: model.kernel_stats(variant),
    }
}
