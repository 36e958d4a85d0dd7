//! `repopt-tui data show SPEC`: what a data set spec resolves to.

use std::fmt::Write;

use anyhow::Result;

use super::spec::DatasetSpec;
use super::{DatasetKind, open};

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
