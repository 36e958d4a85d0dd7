//! Helpers shared by the data-layer integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The project's shared data folder: `$REPOPT_SHARED_DATA`, `<crate>/../shared/data`, or
/// `/work/shared/data`.
pub fn shared() -> PathBuf {
    repopt_tui::data::shared_data_dir().expect(
        "shared data folder not found: set REPOPT_SHARED_DATA or place it at ../shared/data",
    )
}

/// `shared/data/cifar10-jpeg/{train,test}.tar.gz` extracted once per test binary, into a
/// temporary directory removed when the test binary exits (a `TempDir` kept in a static would
/// never be dropped, leaving the extraction behind).
pub fn cifar10_jpeg_root() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_extraction() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("repopt-cifar10-jpeg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        // SAFETY: registers a plain function without captured state; it runs once at exit.
        unsafe { libc::atexit(remove_extraction) };
        for name in ["train.tar.gz", "test.tar.gz"] {
            let f = std::fs::File::open(shared().join("cifar10-jpeg").join(name))
                .expect("cifar10-jpeg archive");
            let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
            tar::Archive::new(gz).unpack(&dir).expect("extract");
        }
        dir
    })
    .as_path()
}

/// Serves `body` for every GET on a loopback port, at most `max_requests` times; returns the
/// base URL. The thread ends after `max_requests` connections or 60 s.
pub fn serve(body: Vec<u8>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut served = 0;
        while served < max_requests && std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).ok();
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(&body);
                    served += 1;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    });
    format!("http://{addr}")
}

/// A CIFAR-10 binary archive with the official layout and record counts (synthetic pixels:
/// record i has label i % 10 and every pixel byte equal to (i * 7) % 256).
pub fn fake_cifar10_archive() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).expect("tar append");
    };
    let file = |offset: usize| {
        let mut v = Vec::with_capacity(10_000 * 3073);
        for i in 0..10_000 {
            let g = offset + i;
            v.push((g % 10) as u8);
            v.extend(std::iter::repeat_n((g * 7 % 256) as u8, 3072));
        }
        v
    };
    for b in 1..=5 {
        add(
            &format!("cifar-10-batches-bin/data_batch_{b}.bin"),
            &file((b - 1) * 10_000),
        );
    }
    add("cifar-10-batches-bin/test_batch.bin", &file(50_000));
    add(
        "cifar-10-batches-bin/batches.meta.txt",
        b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n",
    );
    tar.into_inner().expect("tar").finish().expect("gzip")
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Folder entries of `dir` (names), sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
