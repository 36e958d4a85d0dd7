//! `repopt-tui data show SPEC`: what a data set spec resolves to.

use std::fmt::Write;

use anyhow::Result;

use super::spec::DatasetSpec;
use super::{DatasetKind, Source, open};

/// Resolves `spec` (command-line form or RON) and describes it: kind, path, images per split,
/// classes, image sizes, normalization, subset and skipped images.
pub fn data_show_command(spec: &str) -> Result<String> {
    let spec: DatasetSpec = spec.parse()?;
    data_show(&spec)
}

/// Like [`data_show_command`] for an already-parsed spec.
pub fn data_show(spec: &DatasetSpec) -> Result<String> {
    let ds = open(spec)?;
    let mut s = String::new();
    let _ = writeln!(s, "kind:          {:?}", spec.kind);
    match &spec.path {
        Some(p) => {
            let _ = writeln!(s, "path:          {}", p.display());
        }
        None => {
            let _ = writeln!(
                s,
                "path:          (generated, seed {})",
                spec.synthetic_seed
            );
        }
    }
    let _ = writeln!(s, "description:   {}", ds.description);
    let _ = writeln!(s, "train images:  {}", ds.train.len());
    let _ = writeln!(s, "val images:    {}", ds.val.len());
    let names = if ds.class_names.len() > 12 {
        format!(
            "{}, … , {}",
            ds.class_names[..10].join(", "),
            ds.class_names[ds.class_names.len() - 1]
        )
    } else {
        ds.class_names.join(", ")
    };
    let _ = writeln!(s, "classes:       {} ({names})", ds.classes);
    match ds.native_size {
        Some((w, h)) => {
            let _ = writeln!(s, "stored size:   {w}x{h}");
        }
        None => {
            // Image folders: report the first training image's size.
            let first = if ds.train.is_empty() {
                None
            } else {
                ds.train.get(0).ok()
            };
            match first {
                Some((img, _)) => {
                    let _ = writeln!(
                        s,
                        "stored size:   varies (first image {}x{})",
                        img.width(),
                        img.height()
                    );
                }
                None => {
                    let _ = writeln!(s, "stored size:   varies");
                }
            }
        }
    }
    let _ = writeln!(s, "input size:    {0}x{0}", spec.image_size);
    let _ = writeln!(
        s,
        "normalization: mean {:?} std {:?}",
        ds.normalization.mean, ds.normalization.std
    );
    let _ = writeln!(
        s,
        "augmentation:  {:?} (default for this kind)",
        spec.default_augment()
    );
    if spec.kind == DatasetKind::ImageFolder {
        let _ = writeln!(
            s,
            "skipped:       {} unreadable image(s) so far{}",
            ds.skipped_now(),
            if spec.skip_corrupt {
                ""
            } else {
                " (skip_corrupt off: a bad image stops the run)"
            }
        );
    }
    Ok(s)
}

/// `repopt-tui data verify SPEC`: opens the data set and decodes every image once (image
/// folders; CIFAR and synthetic sets are fully checked by opening them). Lists unreadable
/// files; errors when there are any and the spec does not set `skip_corrupt`.
pub fn data_verify_command(spec: &str) -> Result<String> {
    let spec: DatasetSpec = spec.parse()?;
    let mut s = data_show(&spec)?;
    if spec.kind != DatasetKind::ImageFolder {
        let _ = writeln!(
            s,
            "verify:        nothing more to check for {:?}",
            spec.kind
        );
        return Ok(s);
    }
    let root = spec.path.as_deref().unwrap_or(std::path::Path::new("."));
    let (train, val, _) = super::folder::open_image_folder(root, spec.skip_corrupt)?;
    let mut bad = train.verify();
    bad.extend(val.verify());
    let _ = writeln!(
        s,
        "verify:        decoded {}, {} unreadable",
        crate::output::plural((train.len() + val.len()) as u64, "image"),
        bad.len()
    );
    for (path, err) in bad.iter().take(50) {
        let _ = writeln!(s, "  {}: {err}", path.display());
    }
    if bad.len() > 50 {
        let _ = writeln!(s, "  … and {} more", bad.len() - 50);
    }
    if !bad.is_empty() && !spec.skip_corrupt {
        anyhow::bail!(
            "{s}{} unreadable image(s): replace or remove them, or set skip_corrupt: true",
            bad.len()
        );
    }
    Ok(s)
}

/// `repopt-tui bench data [SAMPLES_DIR]`: images/s per worker thread of the CIFAR train,
/// ImageNet train and ImageNet val pipelines, against the 2x-PIL bar.
pub fn data_bench_command(
    samples_dir: Option<&std::path::Path>,
    threads: usize,
    seconds: f64,
) -> Result<String> {
    let dir = match samples_dir {
        Some(d) => d.to_path_buf(),
        None => super::shared_data_dir()
            .map(|d| d.join("imagenet-samples"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no samples folder given and no shared data folder found (set \
                     REPOPT_SHARED_DATA or pass a folder of JPEG photos)"
                )
            })?,
    };
    let figures = super::bench_pipelines(&dir, threads, seconds)?;
    let mut s = format!("samples: {}\n", dir.display());
    for f in &figures {
        let bar = if f.name.starts_with("imagenet train") {
            Some(210.0)
        } else if f.name.starts_with("imagenet val") {
            Some(264.0)
        } else {
            None
        };
        let _ = write!(s, "{f}");
        if let Some(b) = bar {
            let _ = write!(
                s,
                "  [bar {b:.0}: {}]",
                if f.per_thread >= b { "met" } else { "NOT met" }
            );
        }
        s.push('\n');
    }
    Ok(s)
}
