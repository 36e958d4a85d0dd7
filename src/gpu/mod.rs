//! NVIDIA GPU sampling through NVML (`nvml-wrapper`, which loads `libnvidia-ml` at run time).
//!
//! Used by the dashboard's GPU panel and by runs to write `gpu` events. Without NVML or a GPU the
//! sampler does not fail: it reports *why* there is none ([`NoGpuReason`]) and samples nothing.
//!
//! Library lookup: the default name (`libnvidia-ml.so`, which only the driver's development
//! package installs), then `libnvidia-ml.so.1` (what the driver itself installs).

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use crate::rundir::events::{GpuDeviceSample, GpuSample};

/// The library names tried, in order.
pub const NVML_LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so", "libnvidia-ml.so.1"];

/// Why no GPU can be sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoGpuReason {
    /// No NVML library could be loaded (no NVIDIA driver installed, or not on the loader path).
    LibraryNotFound {
        tried: Vec<String>,
        /// The loader's message for the last name tried.
        detail: String,
    },
    /// The library loaded but the NVIDIA kernel driver is not running.
    DriverNotLoaded,
    /// The user-space library and the kernel driver are different versions (typically after a
    /// driver upgrade without a reboot).
    DriverLibraryMismatch,
    /// NVML works but reports no device.
    NoDevice,
    /// NVML may not talk to the driver (device nodes' permissions, container without GPUs).
    NoPermission,
    /// Any other NVML error, as NVML words it.
    Other(String),
}

impl NoGpuReason {
    /// A short label: `NVML library not found`, `driver/library version mismatch`, ….
    pub fn headline(&self) -> &'static str {
        match self {
            NoGpuReason::LibraryNotFound { .. } => "NVML library not found",
            NoGpuReason::DriverNotLoaded => "NVIDIA driver not loaded",
            NoGpuReason::DriverLibraryMismatch => "driver/library version mismatch",
            NoGpuReason::NoDevice => "no NVIDIA GPU found",
            NoGpuReason::NoPermission => "no permission to query the GPUs",
            NoGpuReason::Other(_) => "NVML error",
        }
    }

    /// What the user can do about it (one line).
    pub fn hint(&self) -> String {
        match self {
            NoGpuReason::LibraryNotFound { tried, detail } => format!(
                "tried {}: {detail}. Install the NVIDIA driver, or add its directory to LD_LIBRARY_PATH.",
                tried.join(", ")
            ),
            NoGpuReason::DriverNotLoaded => {
                "load the kernel module (nvidia-smi should work first)".into()
            }
            NoGpuReason::DriverLibraryMismatch => {
                "the kernel module and libnvidia-ml differ in version: reboot, or reload the module"
                    .into()
            }
            NoGpuReason::NoDevice => "NVML is working but lists no device".into(),
            NoGpuReason::NoPermission => {
                "check the permissions of /dev/nvidia* (or the container's GPU access)".into()
            }
            NoGpuReason::Other(m) => m.clone(),
        }
    }

    fn from_nvml(e: &NvmlError, tried: &[String]) -> Self {
        match e {
            NvmlError::LibloadingError(err) => NoGpuReason::LibraryNotFound {
                tried: tried.to_vec(),
                detail: err.to_string(),
            },
            NvmlError::LibraryNotFound => NoGpuReason::LibraryNotFound {
                tried: tried.to_vec(),
                detail: e.to_string(),
            },
            NvmlError::DriverNotLoaded => NoGpuReason::DriverNotLoaded,
            NvmlError::LibRmVersionMismatch => NoGpuReason::DriverLibraryMismatch,
            NvmlError::NoPermission => NoGpuReason::NoPermission,
            NvmlError::FailedToLoadSymbol(s) => {
                NoGpuReason::Other(format!("libnvidia-ml is too old or not NVML: {s}"))
            }
            other => NoGpuReason::Other(other.to_string()),
        }
    }

    fn is_library_missing(&self) -> bool {
        matches!(self, NoGpuReason::LibraryNotFound { .. })
    }
}

impl std::fmt::Display for NoGpuReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.headline(), self.hint())
    }
}

/// Whether GPUs can be sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuStatus {
    Available {
        /// The library name that loaded.
        library: String,
        driver_version: Option<String>,
        devices: u32,
    },
    Unavailable(NoGpuReason),
}

impl GpuStatus {
    pub fn is_available(&self) -> bool {
        matches!(self, GpuStatus::Available { .. })
    }
}

/// A process using a GPU, as NVML reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    pub pid: u32,
    /// None where NVML does not give per-process figures.
    pub memory_bytes: Option<u64>,
}

/// One device at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuDevice {
    pub index: u32,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// GPU utilization (percent) over NVML's last sample period.
    pub utilization: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    /// Compute processes on this device (empty where NVML does not report them).
    pub processes: Vec<GpuProcess>,
}

impl GpuDevice {
    /// Memory this pid uses on this device, if NVML reports it.
    pub fn process_memory(&self, pid: u32) -> Option<u64> {
        self.processes
            .iter()
            .find(|p| p.pid == pid)
            .and_then(|p| p.memory_bytes)
    }

    /// As the `gpu` event of the run whose process is `pid`.
    pub fn to_event_sample(&self, pid: Option<u32>) -> GpuDeviceSample {
        GpuDeviceSample {
            index: self.index,
            name: self.name.clone(),
            memory_used_bytes: self.memory_used_bytes,
            memory_total_bytes: self.memory_total_bytes,
            utilization: self.utilization,
            temperature_c: self.temperature_c,
            power_w: self.power_w,
            process_memory_bytes: pid.and_then(|p| self.process_memory(p)),
        }
    }
}

/// Samples all NVIDIA devices of the machine.
pub struct GpuSampler {
    nvml: Option<Nvml>,
    status: GpuStatus,
}

impl std::fmt::Debug for GpuSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuSampler")
            .field("status", &self.status)
            .finish()
    }
}

impl GpuSampler {
    /// Initializes NVML with the default library name, then `libnvidia-ml.so.1`. Never fails:
    /// see [`GpuSampler::status`].
    pub fn new() -> Self {
        Self::with_library_names(&NVML_LIBRARY_NAMES)
    }

    /// Initializes NVML trying the given library names (or paths) in order.
    pub fn with_library_names(names: &[&str]) -> Self {
        let mut tried = Vec::new();
        let mut reason: Option<NoGpuReason> = None;
        for name in names {
            tried.push(name.to_string());
            let result = if *name == NVML_LIBRARY_NAMES[0] {
                Nvml::init()
            } else {
                Nvml::builder().lib_path(OsStr::new(name)).init()
            };
            match result {
                Ok(nvml) => return Self::from_nvml(nvml, name),
                Err(e) => {
                    let r = NoGpuReason::from_nvml(&e, &tried);
                    // Keep the most telling reason: a loaded library's error beats "not found".
                    let keep_old = reason
                        .as_ref()
                        .is_some_and(|old| !old.is_library_missing() && r.is_library_missing());
                    if !keep_old {
                        reason = Some(r);
                    }
                }
            }
        }
        let mut reason = reason.unwrap_or(NoGpuReason::LibraryNotFound {
            tried: tried.clone(),
            detail: "no library name given".into(),
        });
        if let NoGpuReason::LibraryNotFound { tried: t, .. } = &mut reason {
            *t = tried;
        }
        GpuSampler {
            nvml: None,
            status: GpuStatus::Unavailable(reason),
        }
    }

    fn from_nvml(nvml: Nvml, library: &str) -> Self {
        let status = match nvml.device_count() {
            Ok(0) => GpuStatus::Unavailable(NoGpuReason::NoDevice),
            Ok(n) => GpuStatus::Available {
                library: library.to_string(),
                driver_version: nvml.sys_driver_version().ok(),
                devices: n,
            },
            Err(e) => GpuStatus::Unavailable(NoGpuReason::from_nvml(&e, &[library.to_string()])),
        };
        GpuSampler {
            nvml: status.is_available().then_some(nvml),
            status,
        }
    }

    /// A sampler that reports the given reason (for tests and for callers that skip NVML).
    pub fn unavailable(reason: NoGpuReason) -> Self {
        GpuSampler {
            nvml: None,
            status: GpuStatus::Unavailable(reason),
        }
    }

    pub fn status(&self) -> &GpuStatus {
        &self.status
    }

    /// Samples every device; empty when unavailable. A device whose query fails is skipped; a
    /// per-metric failure (unsupported on this board) leaves that metric `None`.
    pub fn sample(&mut self) -> Vec<GpuDevice> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                self.status = GpuStatus::Unavailable(NoGpuReason::from_nvml(&e, &[]));
                self.nvml = None;
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            let Ok(dev) = nvml.device_by_index(index) else {
                continue;
            };
            let (used, total) = dev
                .memory_info()
                .map(|m| (m.used, m.total))
                .unwrap_or((0, 0));
            let processes = dev
                .running_compute_processes()
                .map(|ps| {
                    ps.into_iter()
                        .map(|p| GpuProcess {
                            pid: p.pid,
                            memory_bytes: match p.used_gpu_memory {
                                UsedGpuMemory::Used(b) => Some(b),
                                UsedGpuMemory::Unavailable => None,
                            },
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(GpuDevice {
                index,
                name: dev.name().unwrap_or_else(|_| format!("GPU {index}")),
                memory_used_bytes: used,
                memory_total_bytes: total,
                utilization: dev.utilization_rates().ok().map(|u| u.gpu),
                temperature_c: dev.temperature(TemperatureSensor::Gpu).ok(),
                power_w: dev.power_usage().ok().map(|mw| mw as f64 / 1000.0),
                power_limit_w: dev.enforced_power_limit().ok().map(|mw| mw as f64 / 1000.0),
                processes,
            });
        }
        out
    }

    /// A `gpu` event body for the run whose process is `pid` (None when unavailable).
    pub fn sample_event(&mut self, pid: u32) -> Option<GpuSample> {
        self.nvml.as_ref()?;
        let devices = self
            .sample()
            .iter()
            .map(|d| d.to_event_sample(Some(pid)))
            .collect();
        Some(GpuSample { devices })
    }
}

impl Default for GpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_reported_with_the_names_tried() {
        let mut s = GpuSampler::with_library_names(&[
            "/nonexistent/libnvidia-ml.so",
            "libnvidia-ml-not-here.so.1",
        ]);
        match s.status() {
            GpuStatus::Unavailable(NoGpuReason::LibraryNotFound { tried, detail }) => {
                assert_eq!(tried.len(), 2);
                assert!(!detail.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(s.sample().is_empty());
        assert!(s.sample_event(1).is_none());
        let text = match s.status() {
            GpuStatus::Unavailable(r) => r.to_string(),
            _ => unreachable!(),
        };
        assert!(text.starts_with("NVML library not found"), "{text}");
        assert!(text.contains("libnvidia-ml-not-here.so.1"), "{text}");
    }

    /// On a machine without NVML (CI, this development box) the default sampler says why and
    /// samples nothing; on a GPU machine it lists the devices. Neither panics.
    #[test]
    fn default_sampler_reports_why_or_samples() {
        let mut s = GpuSampler::new();
        match s.status().clone() {
            GpuStatus::Unavailable(reason) => {
                eprintln!("no GPU: {reason}");
                if let NoGpuReason::LibraryNotFound { tried, .. } = &reason {
                    assert_eq!(tried, &NVML_LIBRARY_NAMES.map(String::from).to_vec());
                }
                assert!(!reason.hint().is_empty());
                assert!(s.sample().is_empty());
            }
            GpuStatus::Available { devices, .. } => {
                let sampled = s.sample();
                eprintln!("{devices} GPU(s): {sampled:?}");
                assert_eq!(sampled.len(), devices as usize);
            }
        }
    }

    #[test]
    fn errors_map_to_reasons() {
        let tried = vec!["x".to_string()];
        assert_eq!(
            NoGpuReason::from_nvml(&NvmlError::LibRmVersionMismatch, &tried),
            NoGpuReason::DriverLibraryMismatch
        );
        assert_eq!(
            NoGpuReason::from_nvml(&NvmlError::DriverNotLoaded, &tried),
            NoGpuReason::DriverNotLoaded
        );
        assert_eq!(
            NoGpuReason::from_nvml(&NvmlError::NoPermission, &tried),
            NoGpuReason::NoPermission
        );
        assert!(matches!(
            NoGpuReason::from_nvml(&NvmlError::GpuLost, &tried),
            NoGpuReason::Other(_)
        ));
    }
}
