//! libtorch's own collective communication (c10d) for Rust: a [`ProcessGroup`] over a
//! `TCPStore` and Gloo — the store and backend PyTorch's `torch.distributed` uses on CPU —
//! or NCCL (CUDA; only in a build with it, [`HAS_NCCL`]: `make gpu`), with all-reduce,
//! broadcast and barrier on tch tensors.
//!
//! tch exposes no `torch.distributed`; libtorch ships it, so a small C++ shim compiled against
//! the headers of the libtorch in use (csrc/c10d_shim.cpp) gives a C API, and C++ exceptions
//! (a peer that never joined, a connection closed by a dead peer, a timeout) come back as
//! [`Error`]s carrying their message. Nothing here waits forever: every wait is bounded by the
//! group's timeout.
//!
//! ```no_run
//! use std::time::Duration;
//! use tch::Tensor;
//! use torchbook_c10d::{GroupConfig, ProcessGroup, ReduceOp};
//!
//! // Run as two processes, rank 0 and rank 1, with the same store address.
//! let rank = std::env::args().nth(1).unwrap().parse().unwrap();
//! let group = ProcessGroup::new(&GroupConfig::new("127.0.0.1", 29500, rank, 2).timeout(Duration::from_secs(30)))?;
//! let mut x = Tensor::from_slice(&[1.0f32 + rank as f32]);
//! group.all_reduce(&mut x, ReduceOp::Sum)?;
//! assert_eq!(f64::try_from(&x).unwrap(), 3.0);
//! # Ok::<(), torchbook_c10d::Error>(())
//! ```

mod ffi;

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::time::Duration;
use tch::{Device, Tensor};

/// What went wrong in a collective or while forming the group.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// c10d or Gloo threw: the C++ exception's message (timeouts, peers gone, refused ports).
    #[error("{operation}: {message}")]
    Collective { operation: String, message: String },
    /// A configuration or tensor this module refuses before calling c10d.
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether this build has the NCCL backend (built with `TORCHBOOK_NCCL=1` against a libtorch
/// with CUDA, as `make gpu` does).
pub const HAS_NCCL: bool = cfg!(torchbook_nccl);

/// The collective library a group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Gloo, on CPU tensors (a CUDA tensor goes through a CPU copy).
    #[default]
    Gloo,
    /// NCCL, on CUDA tensors of the group's device (a CPU tensor goes through a copy there);
    /// only in a build with NCCL ([`HAS_NCCL`]).
    Nccl,
}

impl Backend {
    /// `"gloo"` or `"nccl"`, as `torch.distributed` names them.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            _ => Err(Error::Usage(format!("backend {s:?}: expected gloo or nccl"))),
        }
    }
}

/// The reduction of an all-reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// The sum divided by the world size (NCCL's own for floating tensors; Gloo has none, so
    /// a sum and a division).
    Avg,
    Max,
    Min,
}

/// Where the group's store is and who this process is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The store's host (torchrun's `MASTER_ADDR`).
    pub store_host: String,
    /// The store's port (torchrun's `MASTER_PORT`).
    pub store_port: u16,
    pub rank: usize,
    pub world_size: usize,
    /// Whether this process hosts the store: rank 0, unless an agent (torchrun's, with
    /// `TORCHELASTIC_USE_AGENT_STORE=True`) hosts it already.
    pub host_store: bool,
    /// The address Gloo binds to, which the other ranks must reach: the store host's when it
    /// is this machine's loopback, else this machine's name.
    pub interface: String,
    /// Bound on every wait: joining, rendezvous and each collective.
    pub timeout: Duration,
    /// Gloo (the default) or NCCL.
    pub backend: Backend,
    /// The CUDA device an NCCL group binds (the local rank); unused by Gloo.
    pub device: usize,
}

impl GroupConfig {
    pub fn new(store_host: &str, store_port: u16, rank: usize, world_size: usize) -> GroupConfig {
        let interface = if is_loopback(store_host) { store_host.to_string() } else { hostname() };
        GroupConfig {
            store_host: store_host.to_string(),
            store_port,
            rank,
            world_size,
            host_store: rank == 0,
            interface,
            timeout: Duration::from_secs(300),
            backend: Backend::Gloo,
            device: 0,
        }
    }

    pub fn backend(mut self, backend: Backend) -> GroupConfig {
        self.backend = backend;
        self
    }

    pub fn device(mut self, index: usize) -> GroupConfig {
        self.device = index;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> GroupConfig {
        self.timeout = timeout;
        self
    }

    pub fn host_store(mut self, host: bool) -> GroupConfig {
        self.host_store = host;
        self
    }

    pub fn interface(mut self, address: &str) -> GroupConfig {
        self.interface = address.to_string();
        self
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// A c10d process group (Gloo or NCCL): this process's membership in a group of
/// `world_size` ranks. Dropping it leaves the group.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: *mut ffi::Group,
    rank: usize,
    world_size: usize,
    backend: Backend,
    device: usize,
}

// The C++ group is thread-safe (c10d runs collectives on its own threads); calls from Rust
// are serialised by `&self` methods waiting for each collective to end.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

/// Takes the message the shim left in `error`.
fn take_error(operation: impl Into<String>, error: *mut c_char) -> Error {
    let message = if error.is_null() {
        "failed without a message".to_string()
    } else {
        // SAFETY: the shim wrote a NUL-terminated malloc'd string; freed right after copying.
        let text = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { ffi::tb_c10d_free_error(error) };
        text
    };
    Error::Collective { operation: operation.into(), message }
}

impl ProcessGroup {
    /// Joins the store (rank 0 or the agent hosts it) and forms the group on the configured
    /// backend; fails within the timeout when a rank never joins, and at once when the
    /// backend is NCCL and this build has none or no CUDA device is there.
    pub fn new(config: &GroupConfig) -> Result<ProcessGroup> {
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(Error::Usage(format!(
                "rank {} of a world of {}: expected a rank from 0 to {}",
                config.rank,
                config.world_size,
                config.world_size.saturating_sub(1)
            )));
        }
        let host = CString::new(config.store_host.as_str()).map_err(|_| Error::Usage("store host contains NUL".into()))?;
        let mut error = std::ptr::null_mut();
        let raw = match config.backend {
            Backend::Gloo => {
                let interface =
                    CString::new(config.interface.as_str()).map_err(|_| Error::Usage("interface contains NUL".into()))?;
                // SAFETY: valid C strings for the call's duration; the shim catches every exception.
                unsafe {
                    ffi::tb_c10d_init_gloo(
                        host.as_ptr(),
                        i32::from(config.store_port),
                        config.rank as i32,
                        config.world_size as i32,
                        timeout_ms(config.timeout),
                        i32::from(config.host_store),
                        interface.as_ptr(),
                        &mut error,
                    )
                }
            }
            Backend::Nccl => init_nccl(config, &host, &mut error)?,
        };
        if raw.is_null() {
            return Err(take_error(
                format!(
                    "joining the process group as rank {} of {} ({}, store {}:{}, timeout {:?}; is every rank started with the same address and port?)",
                    config.rank, config.world_size, config.backend, config.store_host, config.store_port, config.timeout
                ),
                error,
            ));
        }
        Ok(ProcessGroup { raw, rank: config.rank, world_size: config.world_size, backend: config.backend, device: config.device })
    }

    /// The backend the group runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the backend wants tensors: the CPU for Gloo, the group's CUDA device for NCCL.
    pub fn device(&self) -> Device {
        match self.backend {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl => Device::Cuda(self.device),
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Reduces `tensor` across ranks in place (every rank ends with the result): a
    /// contiguous tensor, on the backend's [`device`](Self::device) (elsewhere it goes through
    /// a copy there and back). One tensor per call, as c10d wants one per device (several in
    /// one call would be summed together as if from several devices): flatten a model's
    /// tensors into one buffer per dtype.
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        check_tensor("all_reduce", tensor)?;
        let native_avg = self.backend == Backend::Nccl && tensor.is_floating_point();
        let code = match op {
            ReduceOp::Avg if native_avg => 3,
            ReduceOp::Sum | ReduceOp::Avg => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        };
        self.on_device("all_reduce", tensor, |handle, error| {
            // SAFETY: the handle is a live tch tensor for the call; the shim catches exceptions.
            unsafe { ffi::tb_c10d_all_reduce(self.raw, &handle, 1, code, error) }
        })?;
        if op == ReduceOp::Avg && !native_avg {
            let _ = tensor
                .f_div_scalar_(self.world_size as f64)
                .map_err(|e| Error::Usage(format!("all_reduce average of a {:?} tensor: {e}", tensor.kind())))?;
        }
        Ok(())
    }

    /// Copies `root`'s `tensor` into every other rank's, in place.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        check_tensor("broadcast", tensor)?;
        if root >= self.world_size {
            return Err(Error::Usage(format!("broadcast from rank {root}: the world has ranks 0 to {}", self.world_size - 1)));
        }
        self.on_device("broadcast", tensor, |handle, error| {
            // SAFETY: as in all_reduce.
            unsafe { ffi::tb_c10d_broadcast(self.raw, &handle, 1, root as i32, error) }
        })
    }

    /// Runs the shim's collective `call` on `tensor`, or on a copy of it on the backend's
    /// device that is then copied back.
    fn on_device(
        &self,
        operation: &str,
        tensor: &mut Tensor,
        call: impl FnOnce(*mut torch_sys::C_tensor, *mut *mut c_char) -> i32,
    ) -> Result<()> {
        let device = self.device();
        let mut error = std::ptr::null_mut();
        if tensor.device() == device {
            if call(tensor.as_mut_ptr(), &mut error) != 0 {
                return Err(take_error(operation, error));
            }
            return Ok(());
        }
        let from = tensor.device();
        let staging = |e: tch::TchError| Error::Usage(format!("{operation}: copying a {from:?} tensor to {device:?} for {}: {e}", self.backend));
        let mut copy = tensor.f_to_device(device).and_then(|t| t.f_contiguous()).map_err(staging)?;
        if call(copy.as_mut_ptr(), &mut error) != 0 {
            return Err(take_error(operation, error));
        }
        tch::no_grad(|| tensor.f_copy_(&copy)).map_err(staging)
    }

    /// Returns once every rank has called it (or fails within the timeout).
    pub fn barrier(&self) -> Result<()> {
        let mut error = std::ptr::null_mut();
        // SAFETY: the group is live; the shim catches exceptions.
        if unsafe { ffi::tb_c10d_barrier(self.raw, &mut error) } != 0 {
            return Err(take_error("barrier", error));
        }
        Ok(())
    }
}

fn timeout_ms(timeout: Duration) -> i64 {
    timeout.as_millis().min(i64::MAX as u128) as i64
}

#[cfg(torchbook_nccl)]
fn init_nccl(config: &GroupConfig, host: &CString, error: &mut *mut c_char) -> Result<*mut ffi::Group> {
    // SAFETY: a valid C string for the call's duration; the shim catches every exception.
    Ok(unsafe {
        ffi::tb_c10d_init_nccl(
            host.as_ptr(),
            i32::from(config.store_port),
            config.rank as i32,
            config.world_size as i32,
            timeout_ms(config.timeout),
            i32::from(config.host_store),
            config.device as i32,
            error,
        )
    })
}

#[cfg(not(torchbook_nccl))]
fn init_nccl(_config: &GroupConfig, _host: &CString, _error: &mut *mut c_char) -> Result<*mut ffi::Group> {
    Err(Error::Usage(
        "the NCCL backend: this build has no NCCL: build with `make gpu` (TORCHBOOK_NCCL=1 against a libtorch with CUDA), or use gloo".into(),
    ))
}

fn check_tensor(operation: &str, t: &Tensor) -> Result<()> {
    if !t.is_contiguous() {
        return Err(Error::Usage(format!("{operation}: expected a contiguous tensor, found strides {:?}", t.stride())));
    }
    Ok(())
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by tb_c10d_init_gloo, dropped once.
        unsafe { ffi::tb_c10d_destroy(self.raw) }
    }
}
