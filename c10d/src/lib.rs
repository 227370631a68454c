//! libtorch's own collective communication (c10d) for Rust: a [`ProcessGroup`] over a
//! `TCPStore` and Gloo — the store and backend PyTorch's `torch.distributed` uses on CPU —
//! with all-reduce, broadcast and barrier on tch tensors.
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

/// The reduction of an all-reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// The sum divided by the world size (Gloo has no average of its own).
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
        }
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

/// A c10d Gloo process group: this process's membership in a group of `world_size` ranks.
/// Dropping it leaves the group.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: *mut ffi::Group,
    rank: usize,
    world_size: usize,
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
    /// Joins the store (rank 0 or the agent hosts it) and forms the Gloo group; fails within
    /// the timeout when a rank never joins.
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
        let interface = CString::new(config.interface.as_str()).map_err(|_| Error::Usage("interface contains NUL".into()))?;
        let mut error = std::ptr::null_mut();
        // SAFETY: valid C strings for the call's duration; the shim catches every exception.
        let raw = unsafe {
            ffi::tb_c10d_init_gloo(
                host.as_ptr(),
                i32::from(config.store_port),
                config.rank as i32,
                config.world_size as i32,
                config.timeout.as_millis().min(i64::MAX as u128) as i64,
                i32::from(config.host_store),
                interface.as_ptr(),
                &mut error,
            )
        };
        if raw.is_null() {
            return Err(take_error(
                format!(
                    "joining the process group as rank {} of {} (store {}:{}, timeout {:?}; is every rank started with the same address and port?)",
                    config.rank, config.world_size, config.store_host, config.store_port, config.timeout
                ),
                error,
            ));
        }
        Ok(ProcessGroup { raw, rank: config.rank, world_size: config.world_size })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Reduces `tensor` across ranks in place (every rank ends with the result): a CPU,
    /// contiguous tensor. One tensor per call, as c10d wants one per device (several in one
    /// call would be summed together as if from several devices): flatten a model's tensors
    /// into one buffer per dtype.
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        check_tensor("all_reduce", tensor)?;
        let code = match op {
            ReduceOp::Sum | ReduceOp::Avg => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        };
        let handle = tensor.as_mut_ptr();
        let mut error = std::ptr::null_mut();
        // SAFETY: the handle is a live tch tensor for the call; the shim catches exceptions.
        let status = unsafe { ffi::tb_c10d_all_reduce(self.raw, &handle, 1, code, &mut error) };
        if status != 0 {
            return Err(take_error("all_reduce", error));
        }
        if op == ReduceOp::Avg {
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
        let handle = tensor.as_mut_ptr();
        let mut error = std::ptr::null_mut();
        // SAFETY: as in all_reduce.
        let status = unsafe { ffi::tb_c10d_broadcast(self.raw, &handle, 1, root as i32, &mut error) };
        if status != 0 {
            return Err(take_error("broadcast", error));
        }
        Ok(())
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

fn check_tensor(operation: &str, t: &Tensor) -> Result<()> {
    if t.device() != Device::Cpu {
        return Err(Error::Usage(format!("{operation}: expected a CPU tensor for Gloo, found one on {:?}", t.device())));
    }
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
