//! Download of the official CIFAR archives: streamed to a temporary file next to the target
//! while its MD5 is computed, verified, extracted into a temporary folder next to the target,
//! and only then renamed into place. A failure at any step leaves nothing behind.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use md5::{Digest, Md5};

use super::cifar::{CifarVariant, find_bin_dir};

/// Where an archive comes from and what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadSource {
    pub url: String,
    /// Lower-case hex MD5 of the archive.
    pub md5: String,
}

pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
pub const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";

impl DownloadSource {
    /// The official home page of the data set.
    pub fn official(variant: CifarVariant) -> Self {
        let (url, md5) = match variant {
            CifarVariant::Cifar10 => (CIFAR10_URL, CIFAR10_MD5),
            CifarVariant::Cifar100 { .. } => (CIFAR100_URL, CIFAR100_MD5),
        };
        DownloadSource {
            url: url.into(),
            md5: md5.into(),
        }
    }
}

/// Removes a path on drop unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

fn unique_sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("dataset");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Ok(parent.join(format!(".{name}.{tag}-{}-{nanos}", std::process::id())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams `url` into `dest`, returning the MD5 of the bytes.
fn fetch_to_file(url: &str, dest: &Path) -> Result<String> {
    // A loopback URL (tests, a local mirror) never goes through an environment proxy.
    let loopback = ["http://127.", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.starts_with(p));
    let mut cfg =
        ureq::Agent::config_builder().timeout_connect(Some(std::time::Duration::from_secs(30)));
    if loopback {
        cfg = cfg.proxy(None);
    }
    let agent: ureq::Agent = cfg.build().into();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("cannot download {url}: {e}; check the network or the URL"))?;
    let mut reader = resp.into_body().into_reader();
    let mut file =
        std::fs::File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| anyhow!("download of {url} failed mid-way: {e}; retry"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {}", dest.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// Downloads, verifies and extracts a CIFAR archive so that `target` becomes the folder
/// holding the `.bin` files. `target` must be missing or empty.
pub fn download_cifar(target: &Path, variant: CifarVariant, src: &DownloadSource) -> Result<()> {
    if target.exists() {
        let empty = std::fs::read_dir(target)
            .with_context(|| format!("cannot read {}", target.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "will not download into {}: the folder is not empty",
                target.display()
            );
        }
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let archive = unique_sibling(target, "download")?;
    let _archive_guard = Cleanup(Some(archive.clone()));
    let got = fetch_to_file(&src.url, &archive)?;
    if !got.eq_ignore_ascii_case(src.md5.trim()) {
        bail!(
            "checksum mismatch for {}: the archive has MD5 {got}, expected {}; the download \
             was corrupted or the server sent another file. Nothing was written to {}. Retry, \
             or download the archive by hand and extract it there",
            src.url,
            src.md5,
            target.display()
        );
    }
    let tmp = unique_sibling(target, "extract")?;
    let tmp_guard = Cleanup(Some(tmp.clone()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let file = std::fs::File::open(&archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    tar.unpack(&tmp).map_err(|e| {
        anyhow!(
            "cannot extract the archive from {} ({e}); it is not a valid tar.gz. Nothing was \
             written to {}",
            src.url,
            target.display()
        )
    })?;
    let data_dir = find_bin_dir(&tmp, variant).ok_or_else(|| {
        anyhow!(
            "the archive from {} has no {} folder with the CIFAR files; check the URL",
            src.url,
            variant.folder_name()
        )
    })?;
    if target.exists() {
        std::fs::remove_dir(target)
            .with_context(|| format!("cannot replace empty folder {}", target.display()))?;
    }
    std::fs::rename(&data_dir, target).with_context(|| {
        format!(
            "cannot move {} into place at {}",
            data_dir.display(),
            target.display()
        )
    })?;
    // The rest of the temporary folder (now without the data) is removed by its guard.
    drop(tmp_guard);
    Ok(())
}
