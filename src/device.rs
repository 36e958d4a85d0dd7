//! Devices and backends: `cpu` (burn's Flex backend) or `cuda:N` (burn-cuda, in builds with the
//! `cuda` feature). Generic numerics run on either through [`BackendTask`].

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// Where a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if s == "cuda" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(i) = s.strip_prefix("cuda:") {
            return i
                .parse()
                .map(DeviceSpec::Cuda)
                .map_err(|_| format!("bad CUDA device index in '{s}'"));
        }
        Err(format!(
            "unknown device '{s}': expected cpu, cuda or cuda:N"
        ))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The CPU training backend.
pub type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// Work that is generic over the backend; `dispatch` picks the backend from the device list.
pub trait BackendTask {
    type Output;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs `task` on the backend of `devices` (all of one kind). Fails with a message saying what
/// is missing when the devices cannot be used.
pub fn dispatch<T: BackendTask>(devices: &[DeviceSpec], task: T) -> anyhow::Result<T::Output> {
    let Some(first) = devices.first() else {
        anyhow::bail!("no device given: use cpu or cuda:N");
    };
    match first {
        DeviceSpec::Cpu => {
            if devices.iter().any(|d| *d != DeviceSpec::Cpu) {
                anyhow::bail!("a run uses CPU or CUDA devices, not both ({devices:?})");
            }
            // Flex has one CPU device; several `cpu` entries are replicas on it (data-parallel
            // code path, useful to test multi-device logic without GPUs).
            Ok(task.run::<CpuBackend>(vec![Default::default(); devices.len()]))
        }
        DeviceSpec::Cuda(_) => cuda_dispatch(devices, task),
    }
}

#[cfg(feature = "cuda")]
fn cuda_dispatch<T: BackendTask>(devices: &[DeviceSpec], task: T) -> anyhow::Result<T::Output> {
    let mut indices = Vec::new();
    for d in devices {
        match d {
            DeviceSpec::Cuda(i) => indices.push(*i),
            DeviceSpec::Cpu => {
                anyhow::bail!("a run uses CPU or CUDA devices, not both ({devices:?})")
            }
        }
    }
    cuda_available()?;
    let devices = indices
        .into_iter()
        .map(|index| burn::backend::cuda::CudaDevice { index })
        .collect();
    Ok(task.run::<CudaBackend>(devices))
}

#[cfg(not(feature = "cuda"))]
fn cuda_dispatch<T: BackendTask>(devices: &[DeviceSpec], _task: T) -> anyhow::Result<T::Output> {
    anyhow::bail!(
        "{} asked for, but this binary was built without CUDA support: rebuild with \
         `cargo build --release --features cuda` (no CUDA toolkit needed), or use --device cpu",
        devices[0]
    )
}

/// Checks that the NVIDIA driver library can be loaded, so that a missing GPU is an error
/// message instead of a panic deep inside the CUDA runtime.
pub fn cuda_available() -> anyhow::Result<()> {
    for name in [c"libcuda.so.1", c"libcuda.so"] {
        // SAFETY: dlopen with a valid C string; the handle is closed right away.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            unsafe { libc::dlclose(handle) };
            return Ok(());
        }
    }
    anyhow::bail!(
        "no NVIDIA driver found (libcuda.so.1 could not be loaded): this machine has no usable GPU. \
         Install the NVIDIA driver, or run on the CPU with --device cpu"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!("CUDA".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert!(
            "gpu"
                .parse::<DeviceSpec>()
                .unwrap_err()
                .contains("cpu, cuda or cuda:N")
        );
    }
}
