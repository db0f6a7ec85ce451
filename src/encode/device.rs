//! Choosing where the model runs. This is the only module that mentions the `cuda` feature.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// What `--device` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU when this build has CUDA and a device answers, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("'{other}' is not a device (auto, cpu, cuda or cuda:N)")),
        }
    }
}

/// Whether this binary was built with CUDA support.
pub const fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

/// Turns a choice into a device. `notice` receives a one-line explanation when `auto` falls back.
pub fn select(choice: DeviceChoice, notice: &mut dyn FnMut(&str)) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(ordinal) => open_cuda(ordinal).map_err(|reason| Error::Device {
            message: if cuda_built() {
                format!("{reason}; pass --device cpu to run on the CPU")
            } else {
                reason
            },
        }),
        DeviceChoice::Auto => {
            if !cuda_built() {
                return Ok(Device::Cpu);
            }
            match open_cuda(0) {
                Ok(device) => Ok(device),
                Err(reason) => {
                    notice(&format!(
                        "no usable CUDA device ({reason}); running on the CPU"
                    ));
                    Ok(Device::Cpu)
                }
            }
        }
    }
}

// `cuda_is_available()` is a compile-time answer, so a CUDA build asks the driver: on a machine
// without a GPU (or without a driver) opening the device fails, and the failure says why.
#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> std::result::Result<Device, String> {
    Device::new_cuda(ordinal)
        .map_err(|e| format!("cannot open CUDA device {ordinal}: {}", driver_message(&e)))
}

/// The driver's own words for a failure ("CUDA_ERROR_NO_DEVICE: no CUDA-capable device is
/// detected") rather than candle's debug print of the error value.
#[cfg(feature = "cuda")]
fn driver_message(error: &candle_core::Error) -> String {
    use candle_core::cuda_backend::CudaError;
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => driver_message(inner),
        candle_core::Error::Cuda(inner) => match inner.downcast_ref::<CudaError>() {
            Some(CudaError::Cuda(driver)) => match (driver.error_name(), driver.error_string()) {
                (Ok(name), Ok(text)) => {
                    format!("{}: {}", name.to_string_lossy(), text.to_string_lossy())
                }
                _ => format!("{driver:?}"),
            },
            _ => inner.to_string(),
        },
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> std::result::Result<Device, String> {
    Err(
        "this stancer was built without CUDA; rebuild with `cargo build --release --features cuda`"
            .into(),
    )
}

/// Parses `f32`, `f16` or `bf16`.
pub fn parse_dtype(text: &str) -> Result<DType, String> {
    match text {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("'{other}' is not a dtype (f32, f16 or bf16)")),
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_device_spelling() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA"] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_is_always_available_without_a_notice() {
        let mut notices = Vec::new();
        let device = select(DeviceChoice::Cpu, &mut |line| {
            notices.push(line.to_string())
        })
        .unwrap();
        assert!(device.is_cpu());
        assert!(notices.is_empty());
    }

    #[test]
    fn auto_in_a_cpu_build_is_the_cpu_without_a_notice() {
        if cuda_built() {
            return; // what auto finds depends on the machine
        }
        let mut notices = Vec::new();
        let device = select(DeviceChoice::Auto, &mut |line| {
            notices.push(line.to_string())
        })
        .unwrap();
        assert!(device.is_cpu());
        assert!(notices.is_empty(), "{notices:?}");
    }

    #[test]
    fn cuda_in_a_cpu_build_names_the_rebuild_command() {
        if cuda_built() {
            return;
        }
        let error = select(DeviceChoice::Cuda(0), &mut |_| {}).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("cargo build --release --features cuda"),
            "{message}"
        );
        assert_eq!(message.lines().count(), 1);
    }

    #[test]
    fn dtypes_round_trip() {
        for name in ["f32", "f16", "bf16"] {
            assert_eq!(dtype_name(parse_dtype(name).unwrap()), name);
        }
        assert!(parse_dtype("f64").is_err());
    }
}
