//! The scales of a Target run: where they come from (a scales profile, an HS run, `ones`,
//! `hs-init`), averaged across channels or not, and the bytes a run freezes in its directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::model::Variant;
use crate::optim::scale_sources;
use crate::profile::{ScaleSource, ScalesProfile};
use crate::rundir::{EVENTS_FILE, SCALES_FILE};

use super::newest_run;

/// Resolves a scale source to what a run freezes in its profile: `ones` and `hs-init` stay as
/// they are; `run:<name>` becomes the `scales.ron` of the newest such run under `runs_dir`, an
/// HS run directory its `scales.ron`; paths become absolute. Fails when the file is missing.
pub fn resolve_scale_source(spec: &str, runs_dir: &Path) -> anyhow::Result<ScaleSource> {
    let source = ScaleSource::parse(spec).map_err(|e| anyhow::anyhow!("scales: {e}"))?;
    let path = match source {
        ScaleSource::Ones | ScaleSource::HsInit => return Ok(source),
        ScaleSource::Run(name) => newest_run(runs_dir, &name, Some(SCALES_FILE))
            .map(|d| d.join(SCALES_FILE))
            .with_context(|| {
                format!(
                    "scales: \"{spec}\": no run of '{name}' with a {SCALES_FILE} under {}: run the Hyper-Search first \
                     (repopt-tui --profile profiles/{name}.ron) or point scales at a scales profile",
                    runs_dir.display()
                )
            })?,
        ScaleSource::Path(path) if path.is_dir() => {
            let file = path.join(SCALES_FILE);
            if !file.is_file() {
                let what = if path.join(EVENTS_FILE).exists() {
                    "a run directory without a scales.ron (only Hyper-Search runs write one)"
                } else {
                    "a directory, not a scales profile or a Hyper-Search run directory"
                };
                bail!("scales: {} is {what}", path.display());
            }
            file
        }
        ScaleSource::Path(path) => {
            if !path.exists() {
                bail!(
                    "scales: {} does not exist (import one with `repopt-tui scales import`, make one with \
                     `repopt-tui scales derive`, or use run:<hs profile>, ones or hs-init)",
                    path.display()
                );
            }
            path
        }
    };
    Ok(ScaleSource::Path(
        std::path::absolute(&path).unwrap_or(path),
    ))
}

/// The text a resolved source stands for in a frozen profile.
pub fn source_spec(source: &ScaleSource) -> String {
    match source {
        ScaleSource::Path(p) => p.display().to_string(),
        ScaleSource::Run(name) => format!("run:{name}"),
        ScaleSource::Ones => "ones".into(),
        ScaleSource::HsInit => "hs-init".into(),
    }
}

/// The scales of a resolved source for `variant`, averaged across channels if asked, as the bytes
/// a run freezes and the name of where they came from (for messages). A scales profile used as it
/// is keeps its own bytes; anything derived is written as RON.
pub fn source_bytes(
    source: &ScaleSource,
    average: bool,
    variant: &Variant,
) -> anyhow::Result<(Vec<u8>, PathBuf)> {
    let generated = match source {
        ScaleSource::Ones => scale_sources::ones(variant),
        ScaleSource::HsInit => scale_sources::hs_init(variant),
        ScaleSource::Run(_) => bail!(
            "scales: {} is not resolved to a file yet",
            source_spec(source)
        ),
        ScaleSource::Path(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the scales {}", path.display()))?;
            if !average {
                return Ok((bytes, path.clone()));
            }
            parse_scales(&bytes, path, variant)?
        }
    };
    let scales = if average {
        scale_sources::channel_average(&generated)
    } else {
        generated
    };
    let label = PathBuf::from(if average {
        format!("{} (channel average)", source_spec(source))
    } else {
        source_spec(source)
    });
    Ok((scales.to_ron().into_bytes(), label))
}

/// Parses scales-profile bytes and checks them against `variant`.
pub fn parse_scales(bytes: &[u8], path: &Path, variant: &Variant) -> anyhow::Result<ScalesProfile> {
    let text = std::str::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let scales: ScalesProfile = crate::profile::parse_ron(text, path)?;
    scales.check(variant).map_err(|e| e.in_file(path))?;
    Ok(scales)
}

/// The scales of a source for `variant` (averaged if asked): what a run with this source and
/// switch trains with.
pub fn load_scale_source(
    source: &ScaleSource,
    average: bool,
    variant: &Variant,
) -> anyhow::Result<ScalesProfile> {
    let (bytes, label) = source_bytes(source, average, variant)?;
    parse_scales(&bytes, &label, variant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::variant;

    #[test]
    fn generated_sources_resolve_to_themselves_and_files_to_absolute_paths() {
        let runs = tempfile::tempdir().unwrap();
        for spec in ["ones", "hs-init"] {
            let s = resolve_scale_source(spec, runs.path()).unwrap();
            assert_eq!(source_spec(&s), spec);
        }
        let file = runs.path().join("s.ron");
        std::fs::write(&file, "x").unwrap();
        let s = resolve_scale_source(file.to_str().unwrap(), runs.path()).unwrap();
        assert_eq!(s, ScaleSource::Path(file.clone()));
        let e = resolve_scale_source("one", runs.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("one does not exist") && e.contains("ones or hs-init"),
            "{e}"
        );
        // A directory: an HS run's scales.ron, or a clear refusal.
        let run = runs.path().join("hs-20261201-000000");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join(EVENTS_FILE), "").unwrap();
        let e = resolve_scale_source(run.to_str().unwrap(), runs.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("a run directory without a scales.ron"), "{e}");
        std::fs::write(run.join(SCALES_FILE), "x").unwrap();
        let s = resolve_scale_source(run.to_str().unwrap(), runs.path()).unwrap();
        assert_eq!(s, ScaleSource::Path(run.join(SCALES_FILE)));
        let s = resolve_scale_source("run:hs", runs.path()).unwrap();
        assert_eq!(s, ScaleSource::Path(run.join(SCALES_FILE)));
    }

    #[test]
    fn a_file_used_as_it_is_keeps_its_bytes_and_an_average_is_written_as_ron() {
        let v = variant("T0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.ron");
        let text = format!(
            "// a comment the copy keeps\n{}",
            scale_sources::ones(&v).to_ron()
        );
        std::fs::write(&file, &text).unwrap();
        let source = ScaleSource::Path(file);
        let (bytes, _) = source_bytes(&source, false, &v).unwrap();
        assert_eq!(bytes, text.as_bytes());
        let averaged = load_scale_source(&source, true, &v).unwrap();
        assert_eq!(averaged.blocks, scale_sources::ones(&v).blocks);
        assert!(
            averaged.source.starts_with("channel average of"),
            "{}",
            averaged.source
        );
        assert_eq!(
            load_scale_source(&ScaleSource::HsInit, false, &v).unwrap(),
            scale_sources::hs_init(&v)
        );
    }
}
