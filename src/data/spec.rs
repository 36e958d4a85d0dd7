//! The data set part of a run profile, and its command-line form.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// Which reader a data set uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetKind {
    /// `cifar-10-batches-bin/` (`data_batch_1..5.bin`, `test_batch.bin`).
    Cifar10,
    /// `cifar-100-binary/` (`train.bin`, `test.bin`).
    Cifar100,
    /// ImageNet layout: `root/train/<class>/*`, `root/val/<class>/*` (or `root/test/<class>/*`).
    ImageFolder,
    /// Procedurally generated, learnable images (no files).
    Synthetic,
}

impl DatasetKind {
    /// The name used in command-line specs.
    pub fn cli_name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::ImageFolder => "folder",
            DatasetKind::Synthetic => "synthetic",
        }
    }
}

/// Training-time augmentation preset (evaluation always uses resize + center crop + normalize).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Augment {
    /// RandomCrop(size, padding 4) + horizontal flip (the CIFAR recipe).
    #[default]
    CifarStandard,
    /// RandomResizedCrop(size, scale 0.08–1, ratio 3/4–4/3) + flip + RandAugment `raug15`.
    ImagenetRaug15,
    /// Resize + center crop to size, then horizontal flip.
    FlipOnly,
    /// Resize + center crop to size only.
    None,
}

impl FromStr for Augment {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(
            match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
                "cifarstandard" | "cifar" => Augment::CifarStandard,
                "imagenetraug15" | "raug15" | "imagenet" => Augment::ImagenetRaug15,
                "fliponly" | "flip" => Augment::FlipOnly,
                "none" => Augment::None,
                _ => bail!(
                    "unknown augmentation preset {s:?}: expected CifarStandard, ImagenetRaug15, FlipOnly or None"
                ),
            },
        )
    }
}

/// Largest image side a spec may ask for (a 2048x2048 batch of 1 is already ~50 MB of input).
pub const MAX_IMAGE_SIZE: usize = 2048;
/// Most classes a spec may declare (ImageNet-21k has 21,841).
pub const MAX_CLASSES: usize = 100_000;
/// Most images a synthetic split may have (they are generated in memory).
pub const MAX_SYNTHETIC: usize = 10_000_000;

fn default_synthetic_train() -> usize {
    5000
}
fn default_synthetic_val() -> usize {
    1000
}

/// A data set: what to read and how. Part of the RON run profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    /// Root folder (None for Synthetic). For CIFAR: the `cifar-10-batches-bin` /
    /// `cifar-100-binary` folder itself, or a folder that contains it.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Expected class count (checked), or the number of classes of a synthetic set.
    #[serde(default)]
    pub classes: Option<usize>,
    /// Network input size (32 for CIFAR, 224 for ImageNet).
    pub image_size: usize,
    /// CIFAR-100 only: use the 20 coarse labels instead of the 100 fine ones.
    #[serde(default)]
    pub coarse_labels: bool,
    /// CIFAR only: download the official archive when the folder is empty or missing.
    #[serde(default)]
    pub download: bool,
    /// CIFAR download: URL override (default: the official home page).
    #[serde(default)]
    pub download_url: Option<String>,
    /// CIFAR download: expected MD5 (hex) of the archive, overriding the official one.
    #[serde(default)]
    pub download_md5: Option<String>,
    /// Image folders: skip unreadable images (counted and reported) instead of failing.
    #[serde(default)]
    pub skip_corrupt: bool,
    /// Use only N training images, picked by a seeded shuffle (`subset_seed`).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Use only N validation images, picked by a seeded shuffle (`subset_seed`).
    #[serde(default)]
    pub val_limit: Option<usize>,
    /// Seed of the subset pick for `train_limit` / `val_limit`.
    #[serde(default)]
    pub subset_seed: u64,
    /// Synthetic: number of training images.
    #[serde(default = "default_synthetic_train")]
    pub synthetic_train: usize,
    /// Synthetic: number of validation images.
    #[serde(default = "default_synthetic_val")]
    pub synthetic_val: usize,
    /// Synthetic: generator seed.
    #[serde(default)]
    pub synthetic_seed: u64,
}

impl DatasetSpec {
    /// A spec of `kind` with every option at its default.
    pub fn new(kind: DatasetKind, path: Option<PathBuf>) -> Self {
        let image_size = match kind {
            DatasetKind::ImageFolder => 224,
            _ => 32,
        };
        DatasetSpec {
            kind,
            path,
            classes: None,
            image_size,
            coarse_labels: false,
            download: false,
            download_url: None,
            download_md5: None,
            skip_corrupt: false,
            train_limit: None,
            val_limit: None,
            subset_seed: 0,
            synthetic_train: default_synthetic_train(),
            synthetic_val: default_synthetic_val(),
            synthetic_seed: 0,
        }
    }

    /// Synthetic data set with `classes` classes of `size`x`size` images.
    pub fn synthetic(classes: usize, size: usize, train: usize, val: usize, seed: u64) -> Self {
        DatasetSpec {
            classes: Some(classes),
            image_size: size,
            synthetic_train: train,
            synthetic_val: val,
            synthetic_seed: seed,
            ..DatasetSpec::new(DatasetKind::Synthetic, None)
        }
    }

    /// The training augmentation that the official recipes use for this kind of data set.
    pub fn default_augment(&self) -> Augment {
        match self.kind {
            DatasetKind::ImageFolder => Augment::ImagenetRaug15,
            _ => Augment::CifarStandard,
        }
    }

    /// Checks the combination of options; errors say which field is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.image_size == 0 || self.image_size > MAX_IMAGE_SIZE {
            bail!(
                "data set spec: image_size must be between 1 and {MAX_IMAGE_SIZE}, not {}",
                self.image_size
            );
        }
        if let Some(c) = self.classes
            && c > MAX_CLASSES
        {
            bail!("data set spec: classes must be at most {MAX_CLASSES}, not {c}");
        }
        if self.kind == DatasetKind::Synthetic
            && (self.synthetic_train > MAX_SYNTHETIC || self.synthetic_val > MAX_SYNTHETIC)
        {
            bail!(
                "data set spec: synthetic_train and synthetic_val must be at most {MAX_SYNTHETIC}"
            );
        }
        match self.kind {
            DatasetKind::Synthetic => {
                if self.classes == Some(0) {
                    bail!("data set spec: a synthetic set needs at least 1 class");
                }
                if self.synthetic_train == 0 {
                    bail!("data set spec: synthetic_train must be at least 1");
                }
            }
            _ => {
                if self.path.is_none() {
                    bail!(
                        "data set spec: kind {:?} needs a path (e.g. \"{}:/path/to/data\")",
                        self.kind,
                        self.kind.cli_name()
                    );
                }
            }
        }
        if self.coarse_labels && self.kind != DatasetKind::Cifar100 {
            bail!("data set spec: coarse_labels applies to Cifar100 only");
        }
        if self.download && !matches!(self.kind, DatasetKind::Cifar10 | DatasetKind::Cifar100) {
            bail!("data set spec: download applies to Cifar10 and Cifar100 only");
        }
        if self.train_limit == Some(0) {
            bail!("data set spec: train_limit must be at least 1");
        }
        if self.val_limit == Some(0) {
            bail!(
                "data set spec: val_limit must be at least 1 (the validation split scores the run)"
            );
        }
        if self.kind == DatasetKind::Synthetic && self.synthetic_val == 0 {
            bail!(
                "data set spec: synthetic_val must be at least 1 (the validation split scores the run)"
            );
        }
        Ok(())
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("data set spec: {key}={v:?} is not a boolean (true/false)"),
    }
}

fn parse_num<T: FromStr>(key: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| anyhow!("data set spec: {key}={v:?} is not a non-negative integer"))
}

const SPEC_HELP: &str = "expected KIND:PATH[,key=value...] with KIND one of cifar10, cifar100, \
folder, synthetic, e.g. \"cifar10:/data/cifar-10-batches-bin\", \"cifar100:/data/cifar-100-binary,coarse\", \
\"folder:/data/imagenet,size=224,skip_corrupt\", \"synthetic:classes=10,size=32,train=2000,val=500,seed=7\"; \
keys: size, classes, coarse, download, url, md5, skip_corrupt, train_limit, val_limit, subset_seed, \
train, val, seed; or a RON DatasetSpec in parentheses";

/// Command-line form: `KIND:PATH[,key=value...]` (see [`SPEC_HELP`]) or a RON `DatasetSpec`.
impl FromStr for DatasetSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.starts_with('(') {
            let spec: DatasetSpec =
                ron::from_str(s).map_err(|e| anyhow!("data set spec (RON): {e}; {SPEC_HELP}"))?;
            spec.validate()?;
            return Ok(spec);
        }
        let (kind_str, rest) = match s.split_once(':') {
            Some((k, r)) => (k, r),
            None => (s, ""),
        };
        let kind = match kind_str.to_ascii_lowercase().as_str() {
            "cifar10" | "cifar-10" => DatasetKind::Cifar10,
            "cifar100" | "cifar-100" => DatasetKind::Cifar100,
            "folder" | "imagefolder" | "imagenet" => DatasetKind::ImageFolder,
            "synthetic" | "synth" => DatasetKind::Synthetic,
            other => bail!("data set spec {s:?}: unknown kind {other:?}; {SPEC_HELP}"),
        };
        let mut spec = DatasetSpec::new(kind, None);
        for (i, part) in rest.split(',').enumerate() {
            if part.is_empty() {
                continue;
            }
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None if i == 0 && kind != DatasetKind::Synthetic => {
                    spec.path = Some(PathBuf::from(part));
                    continue;
                }
                None => (part.trim(), ""),
            };
            match key {
                "path" => spec.path = Some(PathBuf::from(value)),
                "size" | "image_size" => spec.image_size = parse_num(key, value)?,
                "classes" => spec.classes = Some(parse_num(key, value)?),
                "coarse" | "coarse_labels" => spec.coarse_labels = parse_bool(key, value)?,
                "download" => spec.download = parse_bool(key, value)?,
                "url" | "download_url" => spec.download_url = Some(value.to_string()),
                "md5" | "download_md5" => spec.download_md5 = Some(value.to_string()),
                "skip_corrupt" => spec.skip_corrupt = parse_bool(key, value)?,
                "train_limit" => spec.train_limit = Some(parse_num(key, value)?),
                "val_limit" => spec.val_limit = Some(parse_num(key, value)?),
                "subset_seed" => spec.subset_seed = parse_num(key, value)?,
                "train" | "synthetic_train" => spec.synthetic_train = parse_num(key, value)?,
                "val" | "synthetic_val" => spec.synthetic_val = parse_num(key, value)?,
                "seed" | "synthetic_seed" => spec.synthetic_seed = parse_num(key, value)?,
                _ => bail!("data set spec {s:?}: unknown key {key:?}; {SPEC_HELP}"),
            }
        }
        spec.validate()
            .map_err(|e| anyhow!("{e} (in data set spec {s:?})"))?;
        Ok(spec)
    }
}

impl fmt::Display for DatasetSpec {
    /// The command-line form (round-trips through `FromStr` for the common keys).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind.cli_name())?;
        let mut parts: Vec<String> = Vec::new();
        if let Some(p) = &self.path {
            parts.push(format!("path={}", p.display()));
        }
        parts.push(format!("size={}", self.image_size));
        if let Some(c) = self.classes {
            parts.push(format!("classes={c}"));
        }
        if self.coarse_labels {
            parts.push("coarse".into());
        }
        if self.download {
            parts.push("download".into());
        }
        if self.skip_corrupt {
            parts.push("skip_corrupt".into());
        }
        if let Some(n) = self.train_limit {
            parts.push(format!("train_limit={n}"));
        }
        if let Some(n) = self.val_limit {
            parts.push(format!("val_limit={n}"));
        }
        if self.kind == DatasetKind::Synthetic {
            parts.push(format!("train={}", self.synthetic_train));
            parts.push(format!("val={}", self.synthetic_val));
            parts.push(format!("seed={}", self.synthetic_seed));
        }
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_forms() {
        let s: DatasetSpec = "cifar10:/data/c10".parse().unwrap();
        assert_eq!(s.kind, DatasetKind::Cifar10);
        assert_eq!(s.path, Some(PathBuf::from("/data/c10")));
        assert_eq!(s.image_size, 32);
        let s: DatasetSpec = "cifar100:/d,coarse,download".parse().unwrap();
        assert!(s.coarse_labels && s.download);
        let s: DatasetSpec = "folder:/img,size=160,skip_corrupt,train_limit=100"
            .parse()
            .unwrap();
        assert_eq!(
            (s.image_size, s.skip_corrupt, s.train_limit),
            (160, true, Some(100))
        );
        let s: DatasetSpec = "synthetic:classes=10,size=32,train=2000,val=500,seed=7"
            .parse()
            .unwrap();
        assert_eq!(s, DatasetSpec::synthetic(10, 32, 2000, 500, 7));
        let back: DatasetSpec = s.to_string().parse().unwrap();
        assert_eq!(back, s);
        assert!("synthetic".parse::<DatasetSpec>().is_ok());
    }

    #[test]
    fn rejects_bad_specs() {
        let e = "mnist:/x".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("unknown kind"), "{e}");
        let e = "cifar10".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("needs a path"), "{e}");
        let e = "cifar10:/x,frobnicate=2"
            .parse::<DatasetSpec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key"), "{e}");
        let e = "cifar10:/x,coarse"
            .parse::<DatasetSpec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("Cifar100 only"), "{e}");
    }

    #[test]
    fn ron_is_strict_and_defaults() {
        let s: DatasetSpec =
            ron::from_str("(kind: Cifar100, path: Some(\"/d\"), image_size: 32)").unwrap();
        assert_eq!(
            s,
            DatasetSpec::new(DatasetKind::Cifar100, Some("/d".into()))
        );
        let e = ron::from_str::<DatasetSpec>("(kind: Cifar100, image_size: 32, colour: 1)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let r = ron::to_string(&s).unwrap();
        assert_eq!(ron::from_str::<DatasetSpec>(&r).unwrap(), s);
    }
}
