//! The device a run trains on, as the command line and the TUI's form name it.

use candle_core::Device;
use std::fmt;
use std::str::FromStr;

/// A device by name: `cpu`, `cuda` (the first GPU) or `cuda:N`. Parsing checks the name
/// only; [`DeviceChoice::open`] finds out whether the device can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    /// A CUDA GPU by its ordinal.
    Cuda(usize),
}

/// A device name that is not `cpu`, `cuda` or `cuda:N`, or a device that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`; expected cpu, cuda or cuda:N")]
    Unknown(String),
    #[error("device `{0}`: expected cuda:N with N a GPU number")]
    BadOrdinal(String),
    #[error(
        "device `{0}`: this genmod was built without CUDA; rebuild with `cargo build --release --features cuda`"
    )]
    NoCudaSupport(DeviceChoice),
    #[error("device `{device}`: {reason}")]
    Unavailable {
        device: DeviceChoice,
        reason: String,
    },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(name: &str) -> Result<Self, DeviceError> {
        match name {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            s if s.starts_with("cuda:") => s[5..]
                .parse::<usize>()
                .map(DeviceChoice::Cuda)
                .map_err(|_| DeviceError::BadOrdinal(s.to_string())),
            other => Err(DeviceError::Unknown(other.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(0) => f.write_str("cuda"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device; a CUDA request in a build without CUDA, or with no such GPU, is an
    /// error that says so.
    pub fn open(self) -> Result<Device, DeviceError> {
        let DeviceChoice::Cuda(ordinal) = self else {
            return Ok(Device::Cpu);
        };
        if !cfg!(feature = "cuda") {
            return Err(DeviceError::NoCudaSupport(self));
        }
        Device::new_cuda(ordinal).map_err(|e| {
            // The user needs the driver's reason (no device, bad ordinal), not candle's backtrace.
            let reason = match e {
                candle_core::Error::WithBacktrace { inner, .. } => inner.to_string(),
                other => other.to_string(),
            };
            DeviceError::Unavailable {
                device: self,
                reason,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_say_what_is_expected() {
        for name in ["cpu", "cuda", "cuda:3"] {
            assert_eq!(name.parse::<DeviceChoice>().unwrap().to_string(), name);
        }
        assert_eq!("cuda:0".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        let e = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(e.contains("unknown device `tpu`"), "{e}");
        let e = "cuda:x".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(e.contains("cuda:N"), "{e}");
        assert!(
            "cpu"
                .parse::<DeviceChoice>()
                .unwrap()
                .open()
                .unwrap()
                .is_cpu()
        );
    }
}
