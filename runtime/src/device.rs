//! Hardware choice, kept out of the model API: everything defaults to [`BestDevice::best`].

use tch::{Cuda, Device};

/// `Device::best()`: the first CUDA device when one is usable, otherwise the CPU.
pub trait BestDevice {
    fn best() -> Self;
}

impl BestDevice for Device {
    fn best() -> Device {
        if Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }
}
