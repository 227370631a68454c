//! Hardware choice, kept out of the model API: everything defaults to [`BestDevice::best`].
//!
//! tch's cell libraries link libtorch with `--as-needed`, which drops `libtorch_cuda.so` (no
//! symbol of it is referenced), so CUDA would look unavailable even on a GPU machine with the
//! full CUDA libtorch. [`load_cuda_backend`] loads it into the process explicitly; its static
//! initialisers register the CUDA backend with libtorch.

use std::sync::OnceLock;
use tch::{Cuda, Device};

/// `Device::best()`: a CUDA device when one is usable, otherwise the CPU. One process per GPU,
/// as data-parallel launchers start them: the GPU is `LOCAL_RANK` (modulo the GPUs there are),
/// the one NCCL binds the rank to; the first GPU otherwise.
pub trait BestDevice {
    fn best() -> Self;
}

impl BestDevice for Device {
    fn best() -> Device {
        if !Cuda::is_available() {
            return Device::Cpu;
        }
        let local_rank = std::env::var("LOCAL_RANK").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
        Device::Cuda(local_rank % Cuda::device_count().max(1) as usize)
    }
}

static CUDA_BACKEND: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads `$LIBTORCH/lib/libtorch_cuda.so` when it exists and `TORCHBOOK_CUDA` is not `0`.
/// Returns why CUDA is not available otherwise (the CPU-only install cannot load it: its CUDA
/// libraries are absent). Called once by the prelude; idempotent.
pub fn load_cuda_backend() -> Result<(), String> {
    CUDA_BACKEND.get_or_init(load_cuda_backend_once).clone()
}

fn load_cuda_backend_once() -> Result<(), String> {
    if std::env::var("TORCHBOOK_CUDA").is_ok_and(|v| v == "0") {
        return Err("disabled by TORCHBOOK_CUDA=0".into());
    }
    let libtorch = std::env::var_os("LIBTORCH").ok_or("LIBTORCH is not set")?;
    let path = std::path::Path::new(&libtorch).join("lib/libtorch_cuda.so");
    if !path.exists() {
        return Err(format!("{} does not exist (CPU-only libtorch)", path.display()));
    }
    let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept for the process.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local message or null.
        let message = unsafe { libc::dlerror() };
        let reason = if message.is_null() {
            "unknown error".to_owned()
        } else {
            unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned()
        };
        return Err(format!("cannot load {}: {reason}", path.display()));
    }
    Ok(())
}
