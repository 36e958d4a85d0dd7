//! Profiles: RON files that say everything about a run (`run`) or hold the RepOptimizer's
//! hyper-parameters (`scales`). Loading is strict: unknown or missing fields are errors that
//! name the file, line and column.

pub mod run;
pub mod scales;

use std::path::{Path, PathBuf};

use ron::extensions::Extensions;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use run::{CheckpointPolicy, OptimizerKind, Recipe, RunKind, RunProfile};
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
