//! Devices and engines. An engine is a burn backend: Flex on the CPU (the default, always built
//! in), burn-cuda on NVIDIA GPUs (feature `cuda`) and LibTorch on the CPU (oneDNN) or on NVIDIA
//! GPUs (cuDNN) (feature `tch`). Generic numerics run on any of them through [`BackendTask`].

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// Where a run computes: the engine and the device. In profiles `Cpu`, `Cuda(N)`,
/// `LibTorchCpu`, `LibTorchCuda(N)`; on the command line `cpu`, `cuda:N`, `libtorch:cpu`,
/// `libtorch:cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceSpec {
    /// burn Flex on the CPU.
    Cpu,
    /// burn-cuda (cubecl kernels) on GPU N.
    Cuda(usize),
    /// LibTorch on the CPU (oneDNN).
    LibTorchCpu,
    /// LibTorch on GPU N (cuDNN).
    LibTorchCuda(usize),
}

/// The burn backend behind a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Flex,
    BurnCuda,
    LibTorch,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Flex => "flex",
            Engine::BurnCuda => "burn-cuda",
            Engine::LibTorch => "libtorch",
        }
    }
}

impl DeviceSpec {
    pub fn engine(self) -> Engine {
        match self {
            DeviceSpec::Cpu => Engine::Flex,
            DeviceSpec::Cuda(_) => Engine::BurnCuda,
            DeviceSpec::LibTorchCpu | DeviceSpec::LibTorchCuda(_) => Engine::LibTorch,
        }
    }

    /// Whether the device computes in host memory (a heap budget can stand for its memory).
    pub fn is_host(self) -> bool {
        matches!(self, DeviceSpec::Cpu | DeviceSpec::LibTorchCpu)
    }

    /// The GPU index, for devices that are GPUs.
    pub fn gpu_index(self) -> Option<usize> {
        match self {
            DeviceSpec::Cuda(i) | DeviceSpec::LibTorchCuda(i) => Some(i),
            DeviceSpec::Cpu | DeviceSpec::LibTorchCpu => None,
        }
    }
}

const DEVICE_SYNTAX: &str = "cpu, cuda, cuda:N, libtorch:cpu, libtorch:cuda or libtorch:cuda:N";

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (libtorch, rest) = match s.strip_prefix("libtorch") {
            Some("") => return Ok(DeviceSpec::LibTorchCpu),
            Some(rest) => match rest.strip_prefix(':') {
                Some(rest) => (true, rest),
                None => return Err(format!("unknown device '{s}': expected {DEVICE_SYNTAX}")),
            },
            None => (false, s.as_str()),
        };
        let cuda = |i: usize| {
            if libtorch {
                DeviceSpec::LibTorchCuda(i)
            } else {
                DeviceSpec::Cuda(i)
            }
        };
        if rest == "cpu" {
            return Ok(if libtorch {
                DeviceSpec::LibTorchCpu
            } else {
                DeviceSpec::Cpu
            });
        }
        if rest == "cuda" {
            return Ok(cuda(0));
        }
        if let Some(i) = rest.strip_prefix("cuda:") {
            return i
                .parse()
                .map(cuda)
                .map_err(|_| format!("bad CUDA device index in '{s}'"));
        }
        Err(format!("unknown device '{s}': expected {DEVICE_SYNTAX}"))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::LibTorchCpu => f.write_str("libtorch:cpu"),
            DeviceSpec::LibTorchCuda(i) => write!(f, "libtorch:cuda:{i}"),
        }
    }
}

/// Keeps freed tensor memory in the process for the next step. glibc serves a large block from a
/// fresh mmap once it raises its dynamic threshold, and trims the heap top when a step frees its
/// buffers, so every step page-faults its tensors in again (B1 at 32x32 on LibTorch: 66,000
/// faults a step, 7% of its time; Flex 2-3%). A fixed threshold at glibc's maximum and no trimming
/// make a step reuse the pages the last one freed; the price is that the process keeps its peak.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; it is called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Threads of the CPU engines: rayon's global pool (Flex, the fused optimizer loops, the data
/// loader's default) and, with the LibTorch engine, torch's intra-op pool.
pub fn set_compute_threads(threads: usize) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    #[cfg(feature = "tch")]
    tch::set_num_threads(threads as i32);
}

/// The engine behind `device` in words, with the libtorch version where it applies.
pub fn engine_description(device: DeviceSpec) -> String {
    match device.engine() {
        #[cfg(feature = "tch")]
        Engine::LibTorch => format!(
            "libtorch {} via burn-tch 0.21",
            libtorch_runtime::built_against().0
        ),
        Engine::Flex => "burn 0.21 flex".into(),
        Engine::BurnCuda => "burn-cuda 0.21 (cubecl)".into(),
        #[allow(unreachable_patterns)]
        other => other.name().into(),
    }
}

/// The CPU training backend.
pub type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;
/// LibTorch, CPU and CUDA devices alike.
#[cfg(feature = "tch")]
pub type TorchBackend = burn::backend::Autodiff<burn::backend::LibTorch>;

/// How a command's devices were chosen, so that a device error says what to change: a profile
/// run takes no `--device` (its profile's `devices` decide), the tools take `--device`.
#[derive(Debug, Clone, Copy)]
pub enum DeviceChoice<'a> {
    /// The `devices` of this run profile (for a resumed run: its frozen `profile.ron`).
    Profile(&'a std::path::Path),
    /// A tool's `--device` flag.
    Flag,
}

impl DeviceChoice<'_> {
    /// What to change to compute on the CPU instead.
    pub fn cpu_fix(&self) -> String {
        match self {
            DeviceChoice::Profile(p) => format!("set `devices: [Cpu]` in {}", p.display()),
            DeviceChoice::Flag => "pass --device cpu".into(),
        }
    }
}

/// Work that is generic over the backend; `dispatch` picks the backend from the device list.
pub trait BackendTask {
    type Output;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs `task` on the backend of `devices` (all of one engine). Fails with a message saying what
/// is missing when the devices cannot be used.
pub fn dispatch<T: BackendTask>(
    devices: &[DeviceSpec],
    choice: DeviceChoice,
    task: T,
) -> anyhow::Result<T::Output> {
    let Some(first) = devices.first() else {
        anyhow::bail!("no device given: use cpu or cuda:N");
    };
    if let Some(other) = devices.iter().find(|d| d.engine() != first.engine()) {
        anyhow::bail!(
            "a run uses one engine on all its devices: {first} ({}) and {other} ({}) differ",
            first.engine().name(),
            other.engine().name()
        );
    }
    match first.engine() {
        Engine::Flex => {
            // Flex has one CPU device; several `cpu` entries are replicas on it (data-parallel
            // code path, useful to test multi-device logic without GPUs).
            Ok(task.run::<CpuBackend>(vec![Default::default(); devices.len()]))
        }
        Engine::BurnCuda => cuda_dispatch(devices, choice, task),
        Engine::LibTorch => torch_dispatch(devices, choice, task),
    }
}

/// The checks `dispatch` makes before it runs anything (engine built in, driver present, device
/// index valid), so a run can refuse its devices before it creates anything.
pub fn check(devices: &[DeviceSpec], choice: DeviceChoice) -> anyhow::Result<()> {
    struct Nothing;
    impl BackendTask for Nothing {
        type Output = ();
        fn run<B: AutodiffBackend>(self, _devices: Vec<B::Device>) {}
    }
    dispatch(devices, choice, Nothing)
}

#[cfg(feature = "cuda")]
fn cuda_dispatch<T: BackendTask>(
    devices: &[DeviceSpec],
    choice: DeviceChoice,
    task: T,
) -> anyhow::Result<T::Output> {
    cuda_available(choice)?;
    let devices = devices
        .iter()
        .filter_map(|d| d.gpu_index())
        .map(|index| burn::backend::cuda::CudaDevice { index })
        .collect();
    Ok(task.run::<CudaBackend>(devices))
}

#[cfg(not(feature = "cuda"))]
fn cuda_dispatch<T: BackendTask>(
    devices: &[DeviceSpec],
    choice: DeviceChoice,
    _task: T,
) -> anyhow::Result<T::Output> {
    anyhow::bail!(
        "{} asked for, but this binary was built without burn-cuda: rebuild with \
         `cargo build --release --features cuda` (no CUDA toolkit needed), or run on the CPU: {}",
        devices[0],
        choice.cpu_fix()
    )
}

#[cfg(feature = "tch")]
fn torch_dispatch<T: BackendTask>(
    devices: &[DeviceSpec],
    choice: DeviceChoice,
    task: T,
) -> anyhow::Result<T::Output> {
    use burn::backend::libtorch::LibTorchDevice;
    libtorch_runtime::check_runtime()?;
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        out.push(match d.gpu_index() {
            None => LibTorchDevice::Cpu,
            Some(i) => {
                libtorch_runtime::check_cuda(i, choice)?;
                // As PyTorch training scripts do: let cuDNN pick the fastest kernels per shape.
                tch::Cuda::cudnn_set_benchmark(true);
                LibTorchDevice::Cuda(i)
            }
        });
    }
    Ok(task.run::<TorchBackend>(out))
}

#[cfg(not(feature = "tch"))]
fn torch_dispatch<T: BackendTask>(
    devices: &[DeviceSpec],
    choice: DeviceChoice,
    _task: T,
) -> anyhow::Result<T::Output> {
    anyhow::bail!(
        "{} asked for, but this binary was built without the LibTorch engine: build it with \
         `source scripts/torch-env.sh && cargo build --release --features tch` (installs torch \
         2.9.0 from PyPI into a cache folder; README, \"Engines\"), or run on the CPU: {}",
        devices[0],
        choice.cpu_fix()
    )
}

/// Checks that the NVIDIA driver library can be loaded, so that a missing GPU is an error
/// message instead of a panic deep inside the CUDA runtime.
pub fn cuda_available(choice: DeviceChoice) -> anyhow::Result<()> {
    for name in [c"libcuda.so.1", c"libcuda.so"] {
        // SAFETY: dlopen with a valid C string; the handle is closed right away.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            // SAFETY: the handle was just returned by dlopen and is closed once.
            unsafe { libc::dlclose(handle) };
            return Ok(());
        }
    }
    anyhow::bail!(
        "no NVIDIA driver found (libcuda.so.1 could not be loaded): this machine has no usable GPU. \
         Install the NVIDIA driver, or run on the CPU: {}",
        choice.cpu_fix()
    )
}

/// Run-time checks of the LibTorch engine: the libtorch that was loaded is the one this binary
/// was built against, and the CUDA device asked for exists.
#[cfg(feature = "tch")]
pub mod libtorch_runtime {
    use std::path::{Path, PathBuf};

    /// The torch version and lib folder this binary was linked against (recorded by build.rs).
    pub fn built_against() -> (&'static str, &'static str) {
        (
            option_env!("REPOPT_LIBTORCH_VERSION").unwrap_or(""),
            option_env!("REPOPT_LIBTORCH_LIB").unwrap_or(""),
        )
    }

    /// The folder of the libtorch_cpu.so this process has loaded.
    fn loaded_lib_dir() -> Option<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.ends_with("/libtorch_cpu.so"))
            .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
    }

    fn version_of(lib: &Path) -> Option<String> {
        let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        Some(line.split('\'').nth(1)?.to_string())
    }

    /// Fails with what to install when the loaded libtorch is not the one built against.
    pub fn check_runtime() -> anyhow::Result<()> {
        let (built, built_lib) = built_against();
        let Some(dir) = loaded_lib_dir() else {
            return Ok(());
        };
        let loaded = version_of(&dir);
        match loaded {
            Some(v) if !built.is_empty() && v != built => anyhow::bail!(
                "this binary was built against torch {built} ({built_lib}) but loaded torch {v} \
                 from {}: install torch=={} there again (`source scripts/torch-env.sh`), or \
                 rebuild with `cargo build --release --features tch` against the torch you have",
                dir.display(),
                built.split('+').next().unwrap_or(built)
            ),
            _ => Ok(()),
        }
    }

    /// Fails with the reason when LibTorch cannot use CUDA device `index`.
    pub fn check_cuda(index: usize, choice: super::DeviceChoice) -> anyhow::Result<()> {
        let count = tch::Cuda::device_count().max(0) as usize;
        if index < count {
            return Ok(());
        }
        if count == 0 {
            super::cuda_available(choice)?;
            anyhow::bail!(
                "libtorch:cuda:{index} asked for, but LibTorch finds no CUDA device (the NVIDIA \
                 driver loads; check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
            )
        }
        anyhow::bail!(
            "libtorch:cuda:{index} asked for, but LibTorch finds {count} CUDA device(s): use \
             libtorch:cuda:0 … libtorch:cuda:{}",
            count - 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!("CUDA".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(
            "libtorch".parse::<DeviceSpec>(),
            Ok(DeviceSpec::LibTorchCpu)
        );
        assert_eq!(
            "libtorch:cpu".parse::<DeviceSpec>(),
            Ok(DeviceSpec::LibTorchCpu)
        );
        assert_eq!(
            "libtorch:cuda".parse::<DeviceSpec>(),
            Ok(DeviceSpec::LibTorchCuda(0))
        );
        assert_eq!(
            "libtorch:cuda:7".parse::<DeviceSpec>(),
            Ok(DeviceSpec::LibTorchCuda(7))
        );
        for d in [
            DeviceSpec::Cpu,
            DeviceSpec::Cuda(2),
            DeviceSpec::LibTorchCpu,
            DeviceSpec::LibTorchCuda(3),
        ] {
            assert_eq!(d.to_string().parse::<DeviceSpec>(), Ok(d));
        }
        for bad in ["gpu", "libtorchcpu", "libtorch:gpu", "libtorch:cuda:x"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    struct Nothing;
    impl BackendTask for Nothing {
        type Output = usize;
        fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> usize {
            devices.len()
        }
    }

    #[test]
    fn one_engine_per_run_and_engines_not_built_in_say_how_to_get_them() {
        let flag = DeviceChoice::Flag;
        assert_eq!(
            dispatch(&[DeviceSpec::Cpu, DeviceSpec::Cpu], flag, Nothing).unwrap(),
            2
        );
        let mixed =
            dispatch(&[DeviceSpec::Cpu, DeviceSpec::LibTorchCpu], flag, Nothing).unwrap_err();
        assert!(mixed.to_string().contains("one engine"), "{mixed}");
        #[cfg(not(feature = "tch"))]
        {
            let e = dispatch(&[DeviceSpec::LibTorchCpu], flag, Nothing)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--features tch") && e.contains("libtorch:cpu"),
                "{e}"
            );
        }
        #[cfg(not(feature = "cuda"))]
        {
            let e = dispatch(&[DeviceSpec::Cuda(1)], flag, Nothing)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--features cuda") && e.contains("cuda:1"), "{e}");
        }
    }

    #[test]
    fn the_cpu_fallback_is_said_the_way_the_devices_were_chosen() {
        // A profile run takes no --device: its profile is what to edit.
        let profile = std::path::Path::new("profiles/b1.ron");
        let fix = DeviceChoice::Profile(profile).cpu_fix();
        assert!(
            fix.contains("devices: [Cpu]") && fix.contains("profiles/b1.ron"),
            "{fix}"
        );
        assert!(!fix.contains("--device"), "{fix}");
        assert_eq!(DeviceChoice::Flag.cpu_fix(), "pass --device cpu");
        // Whichever GPU engine is missing here (not built in, or no driver), the message
        // carries the fix for the way the devices were chosen.
        for d in [DeviceSpec::Cuda(0), DeviceSpec::LibTorchCuda(0)] {
            if let Err(e) = check(&[d], DeviceChoice::Profile(profile)) {
                let e = e.to_string();
                assert!(
                    e.contains("devices: [Cpu]") && !e.contains("--device"),
                    "{e}"
                );
            }
            if let Err(e) = check(&[d], DeviceChoice::Flag) {
                assert!(e.to_string().contains("--device cpu"), "{e}");
            }
        }
    }
}
