//! With the `tch` feature: let the binary find the libtorch it was linked against without
//! LD_LIBRARY_PATH (an rpath to that torch's lib folder), and record which torch that is, so a
//! changed install is reported at run time instead of crashing. Nothing happens without it.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    // torch-sys (`links = "tch"`) exports the lib folder it linked to its direct dependents.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=torch-sys did not say where libtorch is; the binary will need LD_LIBRARY_PATH"
        );
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=REPOPT_LIBTORCH_LIB={lib}");
    println!(
        "cargo:rustc-env=REPOPT_LIBTORCH_VERSION={}",
        torch_version(Path::new(&lib)).unwrap_or_default()
    );
}

/// The version of a pip-installed torch (`torch/version.py`) or of a libtorch archive
/// (`build-version`), from its lib folder.
fn torch_version(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("version.py").display()
        );
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split('\'').nth(1)?.to_string());
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}
