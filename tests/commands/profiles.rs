//! Profiles: every shipped profile parses and fits; every invalid one fails with its message.

use std::path::Path;

use repopt_tui::model::variant;
use repopt_tui::profile::{RunProfile, ScalesProfile};

fn ron_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_run_profile_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let files = ron_files(&dir);
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let p = RunProfile::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(RunProfile::load(&file).unwrap(), p);
        // What a run freezes reads back identically.
        let text = p.to_ron();
        let back: RunProfile = repopt_tui::profile::parse_ron(&text, &file).unwrap();
        assert_eq!(back, p, "{}", file.display());
    }
}

#[test]
fn official_recipes_are_the_papers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let b1 = RunProfile::load(&dir.join("b1.ron")).unwrap();
    assert_eq!(b1.total_batch(), 256);
    let s = b1.schedule(5005);
    assert_eq!(
        (s.base_lr, s.warmup_iters, s.total_iters),
        (0.1, 5 * 5005, 120 * 5005)
    );
    assert_eq!(b1.recipe.label_smoothing, 0.1);
    let hs = RunProfile::load(&dir.join("hs-b1-cifar100.ron")).unwrap();
    assert_eq!(
        (hs.recipe.epochs, hs.total_batch(), hs.recipe.grad_clip),
        (240, 256, Some(5.0))
    );
}

#[test]
fn every_shipped_scales_profile_fits_its_variant() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/scales");
    for file in ron_files(&dir) {
        let p = ScalesProfile::load(&file).unwrap_or_else(|e| panic!("{e}"));
        p.check(&variant(&p.variant).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn every_invalid_profile_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles/invalid");
    let files = ron_files(&dir);
    assert!(files.len() >= 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .expect("first line: // expect: <message>");
        let err = RunProfile::load(&file)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", file.display()))
            .to_string();
        assert!(
            err.contains(expect),
            "{}: expected '{expect}' in '{err}'",
            file.display()
        );
        assert!(
            err.contains(file.file_name().unwrap().to_str().unwrap()),
            "the error names the file: {err}"
        );
    }
}
