//! The data layer: CIFAR binaries, ImageNet-style image folders, a synthetic set, downloads,
//! the official augmentations and a deterministic parallel loader.
//!
//! Everything random (shuffle, subset pick, augmentation) is a pure function of
//! (seed, epoch, sample index): batches are identical whatever the worker count, and a run
//! resumed at iteration k of epoch e sees the same following batches.

pub mod bench;
pub mod cifar;
pub mod cli;
pub mod download;
pub mod folder;
pub mod image;
pub mod loader;
pub mod randaug;
pub mod resize;
pub mod rng;
pub mod spec;
pub mod synthetic;
pub mod transform;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

pub use ::image::RgbImage;
pub use bench::{BenchFigure, bench_pipelines};
pub use cifar::{CifarSource, CifarVariant};
pub use cli::{data_bench_command, data_show, data_show_command, data_verify_command};
pub use folder::ImageFolderSource;
pub use loader::{Batch, Loader, LoaderConfig, LoaderPosition};
pub use spec::{Augment, DatasetKind, DatasetSpec};
pub use synthetic::SyntheticSource;
pub use transform::{Normalization, Pipeline};

/// A split of a data set: random access to (image, label) pairs. Images are 8-bit RGB,
/// row-major HWC.
pub trait Source: Send + Sync {
    fn len(&self) -> usize;
    fn get(&self, index: usize) -> Result<(RgbImage, usize)>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// What sample `index` is, for error messages (a file path, a record number).
    fn name(&self, index: usize) -> String {
        format!("sample {index}")
    }
    /// Unreadable samples skipped so far (image folders with `skip_corrupt`).
    fn skipped(&self) -> usize {
        0
    }
}

/// A seeded subset of another source: the first `n` indices of a seeded permutation.
pub struct Subset {
    inner: Arc<dyn Source>,
    indices: Vec<u32>,
}

impl Subset {
    pub fn new(inner: Arc<dyn Source>, n: usize, seed: u64, stream_epoch: u64) -> Self {
        let mut indices = rng::permutation(inner.len(), seed, rng::STREAM_SUBSET, stream_epoch);
        indices.truncate(n);
        Subset { inner, indices }
    }
    /// Index in the underlying source.
    pub fn inner_index(&self, index: usize) -> usize {
        self.indices[index] as usize
    }
}

impl Source for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<(RgbImage, usize)> {
        match self.indices.get(index) {
            Some(&i) => self.inner.get(i as usize),
            None => bail!(
                "subset index {index} out of range ({} samples)",
                self.indices.len()
            ),
        }
    }
    fn name(&self, index: usize) -> String {
        match self.indices.get(index) {
            Some(&i) => self.inner.name(i as usize),
            None => format!("subset index {index}"),
        }
    }
    fn skipped(&self) -> usize {
        self.inner.skipped()
    }
}

/// An opened data set: both splits and what a run needs to know about them.
pub struct OpenedDataset {
    pub train: Arc<dyn Source>,
    pub val: Arc<dyn Source>,
    pub classes: usize,
    pub class_names: Vec<String>,
    /// One line for logs.
    pub description: String,
    /// Unreadable images skipped so far (known at open time; the sources count further ones).
    pub skipped: usize,
    pub kind: DatasetKind,
    /// Network input size from the spec.
    pub image_size: usize,
    /// Normalization constants for this kind of data.
    pub normalization: Normalization,
    /// Size of the stored images when they all share one (CIFAR 32x32, synthetic), as (w, h).
    pub native_size: Option<(u32, u32)>,
}

impl OpenedDataset {
    /// The pipeline for one split: `augment` for training, resize + center crop for eval.
    pub fn pipeline(&self, augment: Augment, train: bool) -> Pipeline {
        Pipeline::new(augment, self.image_size, self.normalization, train)
    }

    /// Unreadable images skipped so far, over both splits.
    pub fn skipped_now(&self) -> usize {
        self.skipped.max(self.train.skipped() + self.val.skipped())
    }
}

/// The CIFAR folder for a spec, downloading it first when asked and absent.
fn cifar_dir(spec: &DatasetSpec, variant: CifarVariant) -> Result<std::path::PathBuf> {
    let path = spec
        .path
        .as_deref()
        .context("CIFAR data set spec needs a path")?;
    if let Some(d) = cifar::find_bin_dir(path, variant) {
        return Ok(d);
    }
    let empty = match std::fs::read_dir(path) {
        Ok(mut rd) => rd.next().is_none(),
        Err(_) => !path.exists(),
    };
    if spec.download && empty {
        let mut src = download::DownloadSource::official(variant);
        if let Some(u) = &spec.download_url {
            src.url = u.clone();
        }
        if let Some(m) = &spec.download_md5 {
            src.md5 = m.to_ascii_lowercase();
        }
        download::download_cifar(path, variant, &src)?;
        if let Some(d) = cifar::find_bin_dir(path, variant) {
            return Ok(d);
        }
        bail!(
            "downloaded archive from {} did not contain the {} files",
            src.url,
            variant.folder_name()
        );
    }
    let (train_files, test_file, _, _) = variant.files();
    if spec.download {
        bail!(
            "{} has no CIFAR files ({} / {}) but is not empty, so it was not downloaded into; \
             point path at the {} folder or at an empty folder",
            path.display(),
            train_files[0],
            test_file,
            variant.folder_name()
        );
    }
    bail!(
        "no {} data at {}: expected {} and {} there or in {}/{}; set download: true (or \
         add \",download\" on the command line) to fetch it into an empty folder",
        variant.name(),
        path.display(),
        train_files[0],
        test_file,
        path.display(),
        variant.folder_name()
    )
}

/// What `open` assembles for each kind.
struct Parts {
    train: Arc<dyn Source>,
    val: Arc<dyn Source>,
    class_names: Vec<String>,
    description: String,
    normalization: Normalization,
    native_size: Option<(u32, u32)>,
}

fn limit(src: Arc<dyn Source>, n: Option<usize>, seed: u64, which: u64) -> Arc<dyn Source> {
    match n {
        Some(n) if n < src.len() => Arc::new(Subset::new(src, n, seed, which)),
        _ => src,
    }
}

/// Opens the data set a spec describes.
pub fn open(spec: &DatasetSpec) -> Result<OpenedDataset> {
    spec.validate()?;
    let Parts {
        train,
        val,
        class_names,
        description,
        normalization,
        native_size,
    } = match spec.kind {
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
            let variant = if spec.kind == DatasetKind::Cifar10 {
                CifarVariant::Cifar10
            } else {
                CifarVariant::Cifar100 {
                    coarse: spec.coarse_labels,
                }
            };
            let dir = cifar_dir(spec, variant)?;
            let train = CifarSource::open_split(&dir, variant, true)?;
            let val = CifarSource::open_split(&dir, variant, false)?;
            let label = match variant {
                CifarVariant::Cifar10 => "CIFAR-10",
                CifarVariant::Cifar100 { coarse: true } => "CIFAR-100 (coarse labels)",
                CifarVariant::Cifar100 { coarse: false } => "CIFAR-100",
            };
            Parts {
                train: Arc::new(train),
                val: Arc::new(val),
                class_names: cifar::read_class_names(&dir, variant),
                description: format!("{label} binary at {}", dir.display()),
                normalization: if spec.kind == DatasetKind::Cifar10 {
                    Normalization::CIFAR10
                } else {
                    Normalization::CIFAR100
                },
                native_size: Some((32, 32)),
            }
        }
        DatasetKind::ImageFolder => {
            let root = spec
                .path
                .as_deref()
                .context("image folder spec needs a path")?;
            let (train, val, classes) = folder::open_image_folder(root, spec.skip_corrupt)?;
            let description = format!(
                "image folder {} (train: {}, val: {})",
                root.display(),
                train.split_dir().display(),
                val.split_dir().display()
            );
            Parts {
                train: Arc::new(train),
                val: Arc::new(val),
                class_names: classes,
                description,
                normalization: Normalization::IMAGENET,
                native_size: None,
            }
        }
        DatasetKind::Synthetic => {
            let classes = spec.classes.unwrap_or(10);
            let s = spec.image_size;
            let seed = spec.synthetic_seed;
            Parts {
                train: Arc::new(SyntheticSource::new(
                    classes,
                    s,
                    spec.synthetic_train,
                    seed,
                    0,
                )),
                val: Arc::new(SyntheticSource::new(
                    classes,
                    s,
                    spec.synthetic_val,
                    seed,
                    1,
                )),
                class_names: (0..classes).map(|c| format!("class{c}")).collect(),
                description: format!("synthetic, {classes} classes, {s}x{s}, seed {seed}"),
                normalization: Normalization::SYNTHETIC,
                native_size: Some((s as u32, s as u32)),
            }
        }
    };
    let classes = class_names.len();
    if let Some(expected) = spec.classes
        && expected != classes
    {
        bail!(
            "{description}: found {classes} classes but the spec says classes: {expected}; fix \
             the spec or the data"
        );
    }
    let train = limit(train, spec.train_limit, spec.subset_seed, 0);
    let val = limit(val, spec.val_limit, spec.subset_seed, 1);
    let mut description = format!(
        "{description}: {} train / {} val images, {classes} classes, input {}x{}",
        train.len(),
        val.len(),
        spec.image_size,
        spec.image_size
    );
    if spec.train_limit.is_some() || spec.val_limit.is_some() {
        description.push_str(&format!(" (subset, seed {})", spec.subset_seed));
    }
    Ok(OpenedDataset {
        train,
        val,
        classes,
        class_names,
        description,
        skipped: 0,
        kind: spec.kind,
        image_size: spec.image_size,
        normalization,
        native_size,
    })
}

/// The shared data folder of the project (`$REPOPT_SHARED_DATA`, then
/// `<manifest>/../shared/data`, then `/work/shared/data`), for tests, benchmarks and demos.
pub fn shared_data_dir() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("REPOPT_SHARED_DATA")
        && Path::new(&p).is_dir()
    {
        return Some(p.into());
    }
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
        "/work/shared/data".into(),
    ];
    candidates.into_iter().find(|p| p.is_dir())
}
