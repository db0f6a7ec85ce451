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
        DeviceChoice::Cuda(ordinal) => cuda(ordinal),
        DeviceChoice::Auto => {
            if !cuda_built() {
                return Ok(Device::Cpu);
            }
            match cuda(0) {
                Ok(device) => Ok(device),
                Err(e) => {
                    notice(&format!("no usable CUDA device ({e}); running on the CPU"));
                    Ok(Device::Cpu)
                }
            }
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::Device {
        message: format!(
            "cannot open CUDA device {ordinal}: {}",
            e.to_string().lines().next().unwrap_or("")
        ),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::Device {
        message: "this stancer was built without CUDA; rebuild with `cargo build --release --features cuda`".into(),
    })
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
