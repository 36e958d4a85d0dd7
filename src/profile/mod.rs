//! Profiles: RON files that say everything about a run (`run`) or hold the RepOptimizer's
//! hyper-parameters (`scales`). Loading is strict: unknown or missing fields are errors that
//! name the file, line and column.

pub mod run;
pub mod scales;

use std::path::{Path, PathBuf};

use ron::extensions::Extensions;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use run::{CheckpointPolicy, Recipe, RunKind, RunProfile};
pub use scales::{BlockScales, ScaleSource, ScalesProfile};

/// A profile that could not be read or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    // Not `source`: the OS error is part of this message, and anyhow's `{:#}` would print a
    // source a second time.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What is wrong with a profile's contents, found by checks that see values, not files;
/// [`Invalid::in_file`] names the file, as every caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn in_file(self, path: &Path) -> ProfileError {
        ProfileError::Invalid {
            path: path.to_path_buf(),
            message: self.0,
        }
    }
}

fn ron_options() -> ron::Options {
    // `implicit_some` lets optional fields be written as plain values (`scales: "b1.ron"`).
    ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME)
}

/// Parses RON text; errors carry `path:line:col` and serde's description of what was expected.
pub fn parse_ron<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ProfileError> {
    ron_options()
        .from_str(text)
        .map_err(|e| ProfileError::Syntax {
            path: path.to_path_buf(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
        })
}

/// Reads and parses a RON file.
pub fn load_ron<T: DeserializeOwned>(path: &Path) -> Result<T, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|error| ProfileError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    // A UTF-8 byte-order mark (some Windows editors write one) is not RON syntax.
    parse_ron(text.strip_prefix('\u{feff}').unwrap_or(&text), path)
}

/// Pretty RON text that `parse_ron` reads back.
pub fn to_ron<T: Serialize>(value: &T) -> String {
    // Scale vectors on one line each: a profile stays readable and a few hundred kB.
    let config = ron::ser::PrettyConfig::new()
        .struct_names(false)
        .compact_arrays(true);
    ron_options()
        .to_string_pretty(value, config)
        .expect("profiles serialize to RON")
}

/// Writes `text` to `path` atomically (temporary file, fsync, rename), so a crash or a full
/// disk never leaves a half-written file in place of a good one.
pub fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a run profile given by bare name is looked for: `profiles/` in the working directory,
/// then `profiles/` beside the binary and up to two folders above it (a checkout's
/// `target/release/repopt-tui` finds the checkout's `profiles/`).
pub fn profile_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("profiles")];
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        dirs.extend(exe.ancestors().skip(1).take(3).map(|d| d.join("profiles")));
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        let new = d.is_dir() && !seen.contains(&key);
        seen.push(key);
        new
    });
    dirs
}

/// The run profiles (`*.ron`, by stem) of `dir`, sorted.
pub fn profile_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "ron"))
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// A `--profile` argument as a file: a path to an existing file as given; a bare name (`b1`,
/// `b1.ron`, no folder) as `<dir>/<name>.ron` in the first of [`profile_dirs`] that has it.
/// When neither exists, the error lists the profiles there are.
pub fn resolve_run_profile(arg: &Path) -> Result<PathBuf, ProfileError> {
    resolve_in(arg, &profile_dirs())
}

fn resolve_in(arg: &Path, dirs: &[PathBuf]) -> Result<PathBuf, ProfileError> {
    if arg.is_file() {
        return Ok(arg.to_path_buf());
    }
    let bare = arg.components().count() == 1;
    if bare {
        let file = if arg.extension().is_some_and(|x| x == "ron") {
            arg.to_path_buf()
        } else {
            let mut name = arg.as_os_str().to_owned();
            name.push(".ron");
            PathBuf::from(name)
        };
        if let Some(found) = dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    let listed: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            let names = profile_names(d);
            (!names.is_empty()).then(|| format!("{} in {}", names.join(", "), d.display()))
        })
        .collect();
    let message = format!(
        "no such profile{}. {}",
        if bare {
            " (a bare name is looked up as profiles/<name>.ron in the working directory and beside the binary)"
        } else {
            ""
        },
        if listed.is_empty() {
            "No profiles found: give the path of a .ron run profile".to_string()
        } else {
            format!("Available: {}", listed.join("; "))
        }
    );
    Err(ProfileError::Invalid {
        path: arg.to_path_buf(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_finds_its_profile_and_a_wrong_one_lists_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("profiles");
        std::fs::create_dir_all(dir.join("scales")).unwrap();
        for name in ["demo-hs.ron", "b1.ron"] {
            std::fs::write(dir.join(name), "()").unwrap();
        }
        let dirs = [dir.clone()];
        assert_eq!(
            resolve_in(Path::new("demo-hs"), &dirs).unwrap(),
            dir.join("demo-hs.ron")
        );
        assert_eq!(
            resolve_in(Path::new("b1.ron"), &dirs).unwrap(),
            dir.join("b1.ron")
        );
        // An existing path is taken as given.
        let given = dir.join("b1.ron");
        assert_eq!(resolve_in(&given, &[]).unwrap(), given);
        let e = resolve_in(Path::new("demo"), &dirs)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("demo: no such profile") && e.contains("Available: b1, demo-hs in"),
            "{e}"
        );
        // A missing path with folders is not looked up by name, but still lists what exists.
        let e = resolve_in(Path::new("elsewhere/b1.ron"), &dirs)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("elsewhere/b1.ron") && e.contains("b1, demo-hs"),
            "{e}"
        );
    }

    #[test]
    fn a_multi_node_job_scales_the_lr_by_every_nodes_images() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/b1.ron"));
        let p = RunProfile::load(path).unwrap();
        assert!(p.recipe.lr_scaling && p.devices.len() == 8);
        let one = p.schedule(100).base_lr;
        let two = p.schedule_on_nodes(100, 2).base_lr;
        assert!((one - 0.1).abs() < 1e-12, "8 × 32 images: lr {one}");
        assert!(
            (two - 0.2).abs() < 1e-12,
            "2 nodes × 8 × 32 images: lr {two}"
        );
    }
}
