//! Data-parallel training across processes on libtorch's own c10d (Gloo; NCCL for CUDA in a
//! `make gpu` build, [`backend_from_env`]): the process group
//! this process belongs to, set up from torchrun's variables, and the collectives `fit` uses.
//!
//! One group per process, as `torch.distributed`'s default group: [`init_from_env`] (or
//! [`init`]) joins it, [`rank`]/[`world_size`] answer 0/1 without one, and `Model::fit`
//! becomes data-parallel while it is active (DistributedDataParallel's semantics: parameters
//! broadcast from rank 0, each rank its shard of every epoch, gradients averaged before each
//! step, one global History). [`destroy`] leaves it.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::{Kind, Tensor};
pub use torchbook_c10d::{Backend, GroupConfig, ReduceOp, HAS_NCCL};
use torchbook_c10d::ProcessGroup;

static GROUP: Mutex<Option<Arc<ProcessGroup>>> = Mutex::new(None);

fn distributed(e: torchbook_c10d::Error) -> Error {
    Error::Distributed(e.to_string())
}

/// What torchrun, Slurm recipes and Kubeflow's PyTorchJob put in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`).
    pub agent_store: bool,
}

impl LaunchEnv {
    /// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (default: `RANK`), `MASTER_ADDR`,
    /// `MASTER_PORT` and `TORCHELASTIC_USE_AGENT_STORE` through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<LaunchEnv> {
        let number = |name: &str| -> Result<Option<u64>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Distributed(format!("{name}={v:?}: expected a non-negative integer"))
                }),
            }
        };
        let required = |name: &str| -> Result<u64> {
            number(name)?.ok_or_else(|| {
                Error::Distributed(format!(
                    "{name} is not set: launch with torchrun, `torchbook run --nproc-per-node N`, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
                ))
            })
        };
        let rank = required("RANK")? as usize;
        let world_size = required("WORLD_SIZE")? as usize;
        let local_rank = number("LOCAL_RANK")?.map(|v| v as usize).unwrap_or(rank);
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = required("MASTER_PORT")?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::Distributed(format!("MASTER_PORT={port}: expected a port from 1 to 65535")))?;
        if world_size == 0 || rank >= world_size {
            return Err(Error::Distributed(format!("RANK={rank} with WORLD_SIZE={world_size}: expected 0 <= RANK < WORLD_SIZE")));
        }
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(LaunchEnv { rank, world_size, local_rank, master_addr, master_port, agent_store })
    }

    /// The group's configuration: Gloo (set `backend` for NCCL, as [`init_from_env`] does
    /// from [`backend_from_env`]), NCCL's CUDA device being the local rank.
    pub fn config(&self, timeout: Duration) -> GroupConfig {
        GroupConfig::new(&self.master_addr, self.master_port, self.rank, self.world_size)
            .host_store(self.rank == 0 && !self.agent_store)
            .timeout(timeout)
            .device(self.local_rank)
    }
}

/// The backend when none is asked for: NCCL when this build has it ([`HAS_NCCL`], `make gpu`)
/// and CUDA is available, else Gloo.
pub fn default_backend() -> Backend {
    if HAS_NCCL && crate::device::load_cuda_backend().is_ok() && tch::Cuda::is_available() {
        Backend::Nccl
    } else {
        Backend::Gloo
    }
}

/// `TORCHBOOK_DIST_BACKEND` (`gloo` or `nccl`), else [`default_backend`].
pub fn backend_from_env() -> Result<Backend> {
    match std::env::var("TORCHBOOK_DIST_BACKEND") {
        Ok(v) if !v.trim().is_empty() => {
            v.parse().map_err(|_| Error::Distributed(format!("TORCHBOOK_DIST_BACKEND={v:?}: expected gloo or nccl")))
        }
        _ => Ok(default_backend()),
    }
}

/// Joins the process group torchrun's variables describe (timeout: `TORCHBOOK_DIST_TIMEOUT`
/// seconds, default 300; backend: [`backend_from_env`]). Returns this process's launch
/// environment.
pub fn init_from_env() -> Result<LaunchEnv> {
    let env = LaunchEnv::from_vars(|name| std::env::var(name).ok())?;
    let timeout = match std::env::var("TORCHBOOK_DIST_TIMEOUT") {
        Ok(v) => Duration::from_secs_f64(v.parse().map_err(|_| {
            Error::Distributed(format!("TORCHBOOK_DIST_TIMEOUT={v:?}: expected seconds"))
        })?),
        Err(_) => Duration::from_secs(300),
    };
    init(&env.config(timeout).backend(backend_from_env()?))?;
    Ok(env)
}

/// [`init_from_env`] when a launcher set `WORLD_SIZE` (torchrun, `torchbook run
/// --nproc-per-node`, Slurm and Kubeflow recipes), nothing otherwise: one notebook runs alone
/// or as every rank of a data-parallel job. Also nothing when this process is already in a
/// group (`:ranks N` joins the engines before the cell runs).
pub fn init_if_launched() -> Result<Option<LaunchEnv>> {
    if is_initialized() || std::env::var_os("WORLD_SIZE").is_none() {
        return Ok(None);
    }
    init_from_env().map(Some)
}

/// Joins the process group `config` describes; an error if this process is in one already.
pub fn init(config: &GroupConfig) -> Result<()> {
    let mut slot = GROUP.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(group) = slot.as_ref() {
        return Err(Error::Distributed(format!(
            "already rank {} of {}: call distributed::destroy() first",
            group.rank(),
            group.world_size()
        )));
    }
    *slot = Some(Arc::new(ProcessGroup::new(config).map_err(distributed)?));
    Ok(())
}

/// Leaves the process group (nothing if there is none).
pub fn destroy() {
    GROUP.lock().unwrap_or_else(|p| p.into_inner()).take();
}

pub(crate) fn group() -> Option<Arc<ProcessGroup>> {
    GROUP.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// This process's rank (0 without a group).
pub fn rank() -> usize {
    group().map_or(0, |g| g.rank())
}

/// The number of ranks (1 without a group).
pub fn world_size() -> usize {
    group().map_or(1, |g| g.world_size())
}

/// Whether a process group is active.
pub fn is_initialized() -> bool {
    group().is_some()
}

/// Reduces `tensor` across ranks in place (a copy when it is not contiguous); without a
/// group, leaves it as it is.
pub fn all_reduce(tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
    let Some(g) = group() else { return Ok(()) };
    with_contiguous(tensor, |t| g.all_reduce(t, op).map_err(distributed))
}

/// Copies rank `root`'s `tensor` into every rank's.
pub fn broadcast(tensor: &mut Tensor, root: usize) -> Result<()> {
    let Some(g) = group() else { return Ok(()) };
    with_contiguous(tensor, |t| g.broadcast(t, root).map_err(distributed))
}

/// Waits for every rank.
pub fn barrier() -> Result<()> {
    let Some(g) = group() else { return Ok(()) };
    g.barrier().map_err(distributed)
}

fn with_contiguous(tensor: &mut Tensor, f: impl FnOnce(&mut Tensor) -> Result<()>) -> Result<()> {
    if tensor.is_contiguous() {
        return f(tensor);
    }
    let mut copy = tensor.f_contiguous()?;
    f(&mut copy)?;
    tch::no_grad(|| tensor.f_copy_(&copy))?;
    Ok(())
}

/// Broadcasts every tensor from rank 0, one flattened buffer per dtype (c10d takes one tensor
/// per call); used for parameters and buffers at the start of `fit`.
pub(crate) fn broadcast_all(g: &ProcessGroup, tensors: &[Tensor]) -> Result<()> {
    for_each_bucket(tensors, |flat| g.broadcast(flat, 0).map_err(distributed), true)
}

/// Averages the gradients of `params` across ranks (an undefined gradient counts as zeros, as
/// DDP's), one flattened buffer per dtype.
/// Also agrees on an interrupt: `interrupted_here` travels as one more element of the first
/// floating bucket, so a step costs one collective, not two (each is a point where every rank
/// waits for the slowest); returns whether any rank was interrupted, and then no rank should
/// step.
pub(crate) fn average_gradients(g: &ProcessGroup, params: &[Tensor], interrupted_here: bool) -> Result<bool> {
    let mut grads = Vec::with_capacity(params.len());
    for p in params {
        let mut grad = p.grad();
        if !grad.defined() {
            // A parameter this batch did not reach still takes part, so every rank's buckets
            // line up and every rank steps it: a zero gradient through autograd (tch cannot
            // assign one), then the others' average.
            p.f_sum(p.kind())?.f_mul_scalar(0.0)?.f_backward()?;
            grad = p.grad();
        }
        grads.push(grad);
    }
    let mut flag_sent = false;
    let mut interrupted = false;
    for_each_bucket(
        &grads,
        |flat| {
            if flag_sent || !flat.is_floating_point() {
                return g.all_reduce(flat, ReduceOp::Avg).map_err(distributed);
            }
            flag_sent = true;
            let flag = Tensor::f_full([1], if interrupted_here { 1.0 } else { 0.0 }, (flat.kind(), flat.device()))?;
            *flat = Tensor::f_cat(&[flat.shallow_clone(), flag], 0)?;
            g.all_reduce(flat, ReduceOp::Avg).map_err(distributed)?;
            // The average of 0/1 flags: above zero when any rank set its own.
            interrupted = flat.f_double_value(&[flat.numel() as i64 - 1])? > 0.0;
            Ok(())
        },
        true,
    )?;
    if !flag_sent {
        interrupted = any_rank(g, interrupted_here)?;
    }
    Ok(interrupted)
}

/// Flattens `tensors` into one buffer per dtype (in first-seen order), runs `f` on each and,
/// when `write_back`, copies the result into the tensors.
fn for_each_bucket(tensors: &[Tensor], mut f: impl FnMut(&mut Tensor) -> Result<()>, write_back: bool) -> Result<()> {
    let mut kinds: Vec<Kind> = Vec::new();
    for t in tensors {
        if !kinds.contains(&t.kind()) {
            kinds.push(t.kind());
        }
    }
    tch::no_grad(|| -> Result<()> {
        for kind in kinds {
            let members: Vec<&Tensor> = tensors.iter().filter(|t| t.kind() == kind).collect();
            let flat: Vec<Tensor> = members.iter().map(|t| t.f_reshape([-1])).collect::<Result<_, _>>()?;
            let mut buffer = Tensor::f_cat(&flat, 0)?;
            f(&mut buffer)?;
            if write_back {
                let mut offset = 0;
                for t in members {
                    let n = t.numel() as i64;
                    let part = buffer.f_narrow(0, offset, n)?.f_view(t.size().as_slice())?;
                    t.shallow_clone().f_copy_(&part)?;
                    offset += n;
                }
            }
        }
        Ok(())
    })
}

/// Rank `rank`'s contiguous part `[start, end)` of `n` rows (sizes differ by at most one).
pub(crate) fn shard_range(n: i64, rank: usize, world: usize) -> (i64, i64) {
    let (rank, world) = (rank as i64, world as i64);
    (n * rank / world, n * (rank + 1) / world)
}

/// Sums `t` (contiguous, on the CPU) across the ranks of `g`, in place.
pub(crate) fn sum(g: &ProcessGroup, t: &mut Tensor) -> Result<()> {
    g.all_reduce(t, ReduceOp::Sum).map_err(distributed)
}

/// Whether `flag` is set on any rank.
pub(crate) fn any_rank(g: &ProcessGroup, flag: bool) -> Result<bool> {
    let mut t = Tensor::from(i64::from(flag));
    g.all_reduce(&mut t, ReduceOp::Max).map_err(|e| distributed(e))?;
    Ok(t.int64_value(&[]) != 0)
}

/// Whether Ctrl-C reached this rank or any other: every rank must stop at the same batch, or
/// the others would wait in the next all-reduce until the timeout.
pub(crate) fn interrupted_on_any_rank(group: Option<&ProcessGroup>) -> Result<bool> {
    let here = crate::interrupt::take_interrupt();
    match group {
        Some(g) => any_rank(g, here),
        None => Ok(here),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<LaunchEnv> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LaunchEnv::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn torchrun_variables() {
        let e = env(&[("RANK", "3"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500"), ("TORCHELASTIC_USE_AGENT_STORE", "True")]).unwrap();
        assert_eq!(e, LaunchEnv { rank: 3, world_size: 4, local_rank: 1, master_addr: "node0".into(), master_port: 29500, agent_store: true });
        assert!(!e.config(Duration::from_secs(1)).host_store);
        let e = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "29500")]).unwrap();
        assert!(e.config(Duration::from_secs(1)).host_store);
        assert_eq!((e.local_rank, e.master_addr.as_str()), (0, "127.0.0.1"));
    }

    #[test]
    fn bad_variables_say_which() {
        let err = env(&[("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).unwrap_err().to_string();
        assert!(err.contains("RANK is not set"), "{err}");
        let err = env(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).unwrap_err().to_string();
        assert!(err.contains("RANK=2 with WORLD_SIZE=2"), "{err}");
        let err = env(&[("RANK", "x"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).unwrap_err().to_string();
        assert!(err.contains("RANK=\"x\""), "{err}");
        let err = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "70000")]).unwrap_err().to_string();
        assert!(err.contains("MASTER_PORT=70000"), "{err}");
    }

    #[test]
    fn without_a_group_collectives_are_identity() {
        let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
        all_reduce(&mut t, ReduceOp::Sum).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0]);
        assert_eq!((rank(), world_size(), is_initialized()), (0, 1, false));
    }
}
