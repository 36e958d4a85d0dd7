//! Image folders in the ImageNet layout: `root/train/<class>/*`, `root/val/<class>/*`
//! (or `root/test/<class>/*`). Class index = position of the folder name in the sorted list
//! of the training split's class folders.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use image::RgbImage;

use super::Source;
use super::image::load_rgb;

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd =
        std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list folder {}", dir.display()))?;
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

/// The class folder names of a split folder, sorted.
pub fn class_folders(split_dir: &Path) -> Result<Vec<String>> {
    if !split_dir.is_dir() {
        bail!(
            "image folder split {} is missing: expected <root>/train/<class>/*.jpg and \
             <root>/val/<class>/*.jpg (or test/)",
            split_dir.display()
        );
    }
    let mut names = Vec::new();
    for p in sorted_entries(split_dir)? {
        if p.is_dir() {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("class folder name {} is not UTF-8", p.display()))?;
            if !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
    }
    if names.is_empty() {
        bail!(
            "image folder split {} has no class folders: expected one sub-folder per class",
            split_dir.display()
        );
    }
    Ok(names)
}

/// The validation split folder: `val/` or, failing that, `test/`.
pub fn val_dir(root: &Path) -> Result<PathBuf> {
    for name in ["val", "test"] {
        let d = root.join(name);
        if d.is_dir() {
            return Ok(d);
        }
    }
    bail!(
        "image folder {} has no validation split: expected {}/val/<class>/ or {}/test/<class>/",
        root.display(),
        root.display(),
        root.display()
    )
}

/// One split of an image folder: the image paths and their labels.
pub struct ImageFolderSource {
    files: Vec<(PathBuf, u32)>,
    skip_corrupt: bool,
    bad: Mutex<BTreeSet<usize>>,
    split_dir: PathBuf,
}

impl ImageFolderSource {
    /// Scans `split_dir/<class>/*` for the given classes (in index order). An empty class
    /// folder is an error; a class folder missing from this split is an error as well.
    pub fn scan(split_dir: &Path, classes: &[String], skip_corrupt: bool) -> Result<Self> {
        let present = class_folders(split_dir)?;
        for p in &present {
            if !classes.contains(p) {
                bail!(
                    "class folder {} is not among the training split's classes; the splits \
                     must have the same class folders",
                    split_dir.join(p).display()
                );
            }
        }
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = split_dir.join(class);
            if !dir.is_dir() {
                bail!(
                    "class folder {} is missing (the training split has class {class:?}); \
                     create it with that class's images",
                    dir.display()
                );
            }
            let before = files.len();
            for p in sorted_entries(&dir)? {
                if p.is_file() && is_image(&p) {
                    files.push((p, label as u32));
                }
            }
            if files.len() == before {
                bail!(
                    "class folder {} has no images (.jpg, .jpeg or .png); add images or remove \
                     the folder",
                    dir.display()
                );
            }
        }
        Ok(ImageFolderSource {
            files,
            skip_corrupt,
            bad: Mutex::new(BTreeSet::new()),
            split_dir: split_dir.to_path_buf(),
        })
    }

    pub fn path(&self, index: usize) -> &Path {
        &self.files[index].0
    }

    pub fn label(&self, index: usize) -> usize {
        self.files[index].1 as usize
    }

    pub fn split_dir(&self) -> &Path {
        &self.split_dir
    }

    /// Images found corrupt so far (skipped when `skip_corrupt` is set).
    pub fn bad_files(&self) -> Vec<PathBuf> {
        let bad = self.bad.lock().unwrap_or_else(|e| e.into_inner());
        bad.iter().map(|&i| self.files[i].0.clone()).collect()
    }

    /// Decodes every image once (in parallel): returns the corrupt ones. With `skip_corrupt`
    /// they are also remembered, so `skipped()` counts them.
    pub fn verify(&self) -> Vec<(PathBuf, String)> {
        use rayon::prelude::*;
        let bad: Vec<(usize, String)> = (0..self.files.len())
            .into_par_iter()
            .filter_map(|i| {
                load_rgb(&self.files[i].0)
                    .err()
                    .map(|e| (i, format!("{e:#}")))
            })
            .collect();
        let mut set = self.bad.lock().unwrap_or_else(|e| e.into_inner());
        for (i, _) in &bad {
            set.insert(*i);
        }
        bad.into_iter()
            .map(|(i, e)| (self.files[i].0.clone(), e))
            .collect()
    }
}

impl Source for ImageFolderSource {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<(RgbImage, usize)> {
        let n = self.files.len();
        if index >= n {
            bail!(
                "image index {index} out of range ({n} images in {})",
                self.split_dir.display()
            );
        }
        match load_rgb(&self.files[index].0) {
            Ok(img) => Ok((img, self.label(index))),
            Err(e) if !self.skip_corrupt => Err(e.context(
                "set skip_corrupt: true in the data set spec to skip unreadable images, or \
                 replace the file",
            )),
            Err(_) => {
                // Deterministic substitute: the next readable image (wrapping around).
                self.bad
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(index);
                for step in 1..n.min(64) {
                    let j = (index + step) % n;
                    if let Ok(img) = load_rgb(&self.files[j].0) {
                        return Ok((img, self.label(j)));
                    }
                    self.bad.lock().unwrap_or_else(|e| e.into_inner()).insert(j);
                }
                bail!(
                    "image {} and the following images of {} are all unreadable",
                    self.files[index].0.display(),
                    self.split_dir.display()
                )
            }
        }
    }

    fn name(&self, index: usize) -> String {
        self.files
            .get(index)
            .map(|f| f.0.display().to_string())
            .unwrap_or_else(|| format!("index {index}"))
    }

    fn skipped(&self) -> usize {
        self.bad.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Opens both splits of an ImageNet-layout folder.
pub fn open_image_folder(
    root: &Path,
    skip_corrupt: bool,
) -> Result<(ImageFolderSource, ImageFolderSource, Vec<String>)> {
    if !root.is_dir() {
        bail!(
            "image folder {} does not exist: expected <root>/train/<class>/*.jpg and \
             <root>/val/<class>/*.jpg",
            root.display()
        );
    }
    let train_dir = root.join("train");
    let classes = class_folders(&train_dir)?;
    if classes.len() < 2 {
        bail!(
            "image folder split {} has one class folder ({}): a classifier needs at least two \
             classes (one sub-folder per class), or every prediction is trivially right",
            train_dir.display(),
            classes[0]
        );
    }
    let train = ImageFolderSource::scan(&train_dir, &classes, skip_corrupt)?;
    let val = ImageFolderSource::scan(&val_dir(root)?, &classes, skip_corrupt)?;
    Ok((train, val, classes))
}
