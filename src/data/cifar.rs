//! CIFAR-10 / CIFAR-100 binary files (the official "binary version" layouts).
//!
//! A record is the label byte(s) followed by 3072 pixel bytes: 1024 R, 1024 G, 1024 B, each
//! plane row-major 32x32. CIFAR-10: 1 label byte; CIFAR-100: coarse then fine label byte.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::RgbImage;

use super::Source;

/// Pixels per CIFAR image (3 x 32 x 32).
pub const PIXELS: usize = 3 * 32 * 32;

pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

pub const CIFAR100_FINE: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

pub const CIFAR100_COARSE: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// Which CIFAR layout, and for CIFAR-100 which label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarVariant {
    Cifar10,
    Cifar100 { coarse: bool },
}

impl CifarVariant {
    /// Human-readable name for messages.
    pub fn name(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "CIFAR-10",
            CifarVariant::Cifar100 { coarse: false } => "CIFAR-100",
            CifarVariant::Cifar100 { coarse: true } => "CIFAR-100 (coarse labels)",
        }
    }

    pub fn label_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 1,
            CifarVariant::Cifar100 { .. } => 2,
        }
    }
    pub fn record_len(self) -> usize {
        self.label_bytes() + PIXELS
    }
    pub fn classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100 { coarse: true } => 20,
            CifarVariant::Cifar100 { coarse: false } => 100,
        }
    }
    /// Folder name inside the official archive.
    pub fn folder_name(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "cifar-10-batches-bin",
            CifarVariant::Cifar100 { .. } => "cifar-100-binary",
        }
    }
    /// (train files, test files, records per train file, records per test file).
    pub fn files(self) -> (Vec<&'static str>, &'static str, usize, usize) {
        match self {
            CifarVariant::Cifar10 => (
                vec![
                    "data_batch_1.bin",
                    "data_batch_2.bin",
                    "data_batch_3.bin",
                    "data_batch_4.bin",
                    "data_batch_5.bin",
                ],
                "test_batch.bin",
                10_000,
                10_000,
            ),
            CifarVariant::Cifar100 { .. } => (vec!["train.bin"], "test.bin", 50_000, 10_000),
        }
    }
    pub fn class_names(self) -> Vec<String> {
        let names: &[&str] = match self {
            CifarVariant::Cifar10 => &CIFAR10_CLASSES,
            CifarVariant::Cifar100 { coarse: true } => &CIFAR100_COARSE,
            CifarVariant::Cifar100 { coarse: false } => &CIFAR100_FINE,
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// Records of one split held in memory (3072 pixel bytes per image, CHW planes as in the file).
pub struct CifarSource {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    description: String,
}

impl CifarSource {
    /// Decodes the records of one file. `expected_records`: the exact count the official file
    /// has (None: any whole number of records, e.g. the 20-record golden files).
    pub fn from_file(
        path: &Path,
        variant: CifarVariant,
        expected_records: Option<usize>,
    ) -> Result<Self> {
        let mut s = CifarSource {
            pixels: Vec::new(),
            labels: Vec::new(),
            description: path.display().to_string(),
        };
        s.append_file(path, variant, expected_records)?;
        Ok(s)
    }

    fn append_file(
        &mut self,
        path: &Path,
        variant: CifarVariant,
        expected_records: Option<usize>,
    ) -> Result<()> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read CIFAR file {}; check the path, or set download: true to fetch the data set",
                path.display()
            )
        })?;
        let rec = variant.record_len();
        let whole = bytes.len() / rec;
        if bytes.len() % rec != 0 {
            bail!(
                "CIFAR file {} is truncated or not a {} file: {} bytes is not a whole number of \
                 {rec}-byte records; record {} at byte offset {} is incomplete ({} of {rec} bytes). \
                 Delete the folder and download or extract the archive again",
                path.display(),
                variant.name(),
                bytes.len(),
                whole,
                whole * rec,
                bytes.len() - whole * rec
            );
        }
        if let Some(n) = expected_records
            && whole != n
        {
            bail!(
                "CIFAR file {} has {whole} records where the official file has {n} ({} bytes \
                 instead of {}; the first missing record would start at byte offset {}). It is \
                 truncated or from another data set: delete the folder and download or extract \
                 the archive again",
                path.display(),
                bytes.len(),
                n * rec,
                whole.min(n) * rec
            );
        }
        if whole == 0 {
            bail!("CIFAR file {} is empty", path.display());
        }
        self.pixels.reserve(whole * PIXELS);
        self.labels.reserve(whole);
        let classes = variant.classes();
        for (i, r) in bytes.chunks_exact(rec).enumerate() {
            let label = match variant {
                CifarVariant::Cifar10 => r[0],
                CifarVariant::Cifar100 { coarse: true } => r[0],
                CifarVariant::Cifar100 { coarse: false } => r[1],
            };
            // Validate both label bytes of CIFAR-100 even when only one is used.
            let bad = (label as usize) >= classes
                || matches!(variant, CifarVariant::Cifar100 { .. }) && (r[0] >= 20 || r[1] >= 100);
            if bad {
                bail!(
                    "CIFAR file {}: record {i} at byte offset {} has label byte(s) {:?}, out of \
                     range for {}; the file is corrupt or of the other CIFAR variant",
                    path.display(),
                    i * rec,
                    &r[..variant.label_bytes()],
                    variant.name()
                );
            }
            self.labels.push(label);
            self.pixels.extend_from_slice(&r[variant.label_bytes()..]);
        }
        Ok(())
    }

    /// Opens one split of an official CIFAR folder (`dir` holds the `.bin` files), checking
    /// the exact record counts.
    pub fn open_split(dir: &Path, variant: CifarVariant, train: bool) -> Result<Self> {
        let (train_files, test_file, per_train, per_test) = variant.files();
        let mut s = CifarSource {
            pixels: Vec::new(),
            labels: Vec::new(),
            description: format!(
                "{} ({})",
                dir.display(),
                if train { "train" } else { "test" }
            ),
        };
        if train {
            for f in train_files {
                s.append_file(&dir.join(f), variant, Some(per_train))?;
            }
        } else {
            s.append_file(&dir.join(test_file), variant, Some(per_test))?;
        }
        Ok(s)
    }

    /// Raw label of record `i`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    /// The 3072 file-order pixel bytes of record `i`.
    pub fn raw_pixels(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }
}

/// Converts CIFAR's planar (CHW) pixel bytes into an interleaved RGB image.
pub fn planes_to_rgb(p: &[u8]) -> RgbImage {
    let mut out = vec![0u8; PIXELS];
    for i in 0..1024 {
        out[3 * i] = p[i];
        out[3 * i + 1] = p[1024 + i];
        out[3 * i + 2] = p[2048 + i];
    }
    RgbImage::from_raw(32, 32, out).expect("32x32x3 buffer")
}

impl Source for CifarSource {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<(RgbImage, usize)> {
        if index >= self.len() {
            bail!(
                "CIFAR index {index} out of range ({} records in {})",
                self.len(),
                self.description
            );
        }
        Ok((planes_to_rgb(self.raw_pixels(index)), self.label(index)))
    }
    fn name(&self, index: usize) -> String {
        format!("{} record {index}", self.description)
    }
}

/// Finds the folder holding the `.bin` files: `path` itself or `path/<official folder name>`.
pub fn find_bin_dir(path: &Path, variant: CifarVariant) -> Option<PathBuf> {
    let (train_files, test_file, _, _) = variant.files();
    let marker = |d: &Path| d.join(test_file).is_file() || d.join(train_files[0]).is_file();
    if marker(path) {
        return Some(path.to_path_buf());
    }
    let sub = path.join(variant.folder_name());
    if marker(&sub) {
        return Some(sub);
    }
    None
}

/// Class names: from the archive's names file when present, else the built-in lists.
pub fn read_class_names(dir: &Path, variant: CifarVariant) -> Vec<String> {
    let file = match variant {
        CifarVariant::Cifar10 => "batches.meta.txt",
        CifarVariant::Cifar100 { coarse: true } => "coarse_label_names.txt",
        CifarVariant::Cifar100 { coarse: false } => "fine_label_names.txt",
    };
    if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
        let names: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if names.len() == variant.classes() {
            return names;
        }
    }
    variant.class_names()
}
