//! c10d through the shim, across real processes on 127.0.0.1: every test re-runs this test
//! binary once per rank (the child sees `TB_C10D_RANK` and plays its part), then checks every
//! rank's exit and output. Covers the collectives' results at 2 and 4 ranks, and that a rank
//! that never joins or dies mid-run ends in an error on the others within the timeout.

use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};
use torchbook_c10d::{GroupConfig, ProcessGroup, ReduceOp};

/// This process's part when it is a rank: (rank, world size, store port).
fn as_rank() -> Option<(usize, usize, u16)> {
    let rank = std::env::var("TB_C10D_RANK").ok()?.parse().ok()?;
    let world = std::env::var("TB_C10D_WORLD").ok()?.parse().ok()?;
    let port = std::env::var("TB_C10D_PORT").ok()?.parse().ok()?;
    Some((rank, world, port))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `test` in `ranks` (a subset of 0..world) child processes and returns their outputs
/// in rank order, each after at most `limit` (a hang is a failure, not a wait).
fn run_ranks(test: &str, world: usize, ranks: &[usize], limit: Duration) -> Vec<Output> {
    let port = free_port();
    let children: Vec<_> = ranks
        .iter()
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env("TB_C10D_RANK", rank.to_string())
                .env("TB_C10D_WORLD", world.to_string())
                .env("TB_C10D_PORT", port.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert!(started.elapsed() < limit, "ranks took {:?}, limit {limit:?}", started.elapsed());
    outputs
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn group(rank: usize, world: usize, port: u16, timeout: Duration) -> torchbook_c10d::Result<ProcessGroup> {
    ProcessGroup::new(&GroupConfig::new("127.0.0.1", port, rank, world).timeout(timeout))
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float)).unwrap()
}

/// Sum, average, max and min of rank-dependent values, a broadcast from the last rank, and a
/// barrier; every rank checks its own results.
fn collectives_as_rank(rank: usize, world: usize, port: u16) {
    let group = group(rank, world, port, Duration::from_secs(30)).unwrap();
    assert_eq!((group.rank(), group.world_size()), (rank, world));
    let r = rank as f32;
    let n = world as f32;
    let mut sum = Tensor::from_slice(&[r + 1.0, 10.0 * r, -r]);
    group.all_reduce(&mut sum, ReduceOp::Sum).unwrap();
    let total: f32 = (1..=world).map(|k| k as f32).sum();
    assert_eq!(values(&sum), [total, 10.0 * (total - n), -(total - n)]);
    let mut avg = Tensor::from_slice(&[r]);
    group.all_reduce(&mut avg, ReduceOp::Avg).unwrap();
    assert_eq!(values(&avg), [(total - n) / n]);
    let mut max = Tensor::from_slice(&[r, -r]);
    group.all_reduce(&mut max, ReduceOp::Max).unwrap();
    assert_eq!(values(&max), [n - 1.0, 0.0]);
    let mut min = Tensor::from_slice(&[r, -r]);
    group.all_reduce(&mut min, ReduceOp::Min).unwrap();
    assert_eq!(values(&min), [0.0, -(n - 1.0)]);
    // Integers and a 2-D tensor too (gradients are floats, counts are integers).
    let mut counts = Tensor::from_slice(&[rank as i64, 1]).reshape([1, 2]);
    group.all_reduce(&mut counts, ReduceOp::Sum).unwrap();
    assert_eq!(Vec::<i64>::try_from(counts.flatten(0, -1)).unwrap(), [(world * (world - 1) / 2) as i64, world as i64]);
    let mut weights = Tensor::full([3, 4], r as f64, (Kind::Float, tch::Device::Cpu));
    group.broadcast(&mut weights, world - 1).unwrap();
    assert!(values(&weights.flatten(0, -1)).iter().all(|&v| v == n - 1.0));
    group.barrier().unwrap();
    println!("rank {rank} ok");
}

fn check_collectives(test: &str, world: usize) {
    let ranks: Vec<usize> = (0..world).collect();
    let outputs = run_ranks(test, world, &ranks, Duration::from_secs(120));
    for (rank, output) in outputs.iter().enumerate() {
        assert!(output.status.success(), "rank {rank} failed:\n{}", text(output));
        assert!(text(output).contains(&format!("rank {rank} ok")), "rank {rank}:\n{}", text(output));
    }
}

#[test]
fn collectives_on_two_ranks() {
    match as_rank() {
        Some((rank, world, port)) => collectives_as_rank(rank, world, port),
        None => check_collectives("collectives_on_two_ranks", 2),
    }
}

#[test]
fn collectives_on_four_ranks() {
    match as_rank() {
        Some((rank, world, port)) => collectives_as_rank(rank, world, port),
        None => check_collectives("collectives_on_four_ranks", 4),
    }
}

#[test]
fn a_rank_that_never_joins_is_an_error_within_the_timeout() {
    match as_rank() {
        Some((rank, world, port)) => {
            let started = Instant::now();
            let err = group(rank, world, port, Duration::from_secs(5)).unwrap_err().to_string();
            println!("rank {rank} error after {:.1} s: {err}", started.elapsed().as_secs_f64());
        }
        None => {
            // Rank 1 of 2 never starts.
            let outputs = run_ranks("a_rank_that_never_joins_is_an_error_within_the_timeout", 2, &[0], Duration::from_secs(60));
            let out = text(&outputs[0]);
            assert!(outputs[0].status.success(), "{out}");
            assert!(out.contains("rank 0 error after") && out.contains("joining the process group"), "{out}");
        }
    }
}

#[test]
fn a_rank_that_dies_is_an_error_on_the_others_within_the_timeout() {
    match as_rank() {
        Some((rank, world, port)) => {
            let group = group(rank, world, port, Duration::from_secs(10)).unwrap();
            let mut x = Tensor::from_slice(&[1.0f32]);
            group.all_reduce(&mut x, ReduceOp::Sum).unwrap();
            if rank == 1 {
                // Gone without leaving the group, as a killed process is.
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            let err = group.all_reduce(&mut x, ReduceOp::Sum).unwrap_err().to_string();
            println!("rank {rank} error after {:.1} s: {err}", started.elapsed().as_secs_f64());
        }
        None => {
            let outputs =
                run_ranks("a_rank_that_dies_is_an_error_on_the_others_within_the_timeout", 2, &[0, 1], Duration::from_secs(60));
            let out = text(&outputs[0]);
            assert!(outputs[0].status.success(), "{out}");
            assert!(out.contains("rank 0 error after") && out.contains("all_reduce"), "{out}");
        }
    }
}

#[test]
fn a_bad_rank_is_refused_before_c10d() {
    if as_rank().is_some() {
        return;
    }
    let err = ProcessGroup::new(&GroupConfig::new("127.0.0.1", free_port(), 2, 2)).unwrap_err().to_string();
    assert!(err.contains("rank 2 of a world of 2"), "{err}");
}

#[test]
fn backends_by_name_and_nccl_only_when_built_with_it() {
    if as_rank().is_some() {
        return;
    }
    use torchbook_c10d::{Backend, HAS_NCCL};
    assert_eq!("gloo".parse::<Backend>().unwrap(), Backend::Gloo);
    assert_eq!(" NCCL".parse::<Backend>().unwrap(), Backend::Nccl);
    assert!("mpi".parse::<Backend>().unwrap_err().to_string().contains("expected gloo or nccl"));
    assert_eq!(GroupConfig::new("127.0.0.1", 1, 0, 1).backend, Backend::Gloo);
    let config = GroupConfig::new("127.0.0.1", free_port(), 0, 1).backend(Backend::Nccl).timeout(Duration::from_secs(10));
    match ProcessGroup::new(&config) {
        Err(e) if !HAS_NCCL => assert!(e.to_string().contains("this build has no NCCL: build with `make gpu`"), "{e}"),
        // The NCCL build without a CUDA device: a clear error, not a crash.
        Err(e) => assert!(!tch::Cuda::is_available(), "NCCL with CUDA failed: {e}"),
        Ok(g) => {
            assert!(HAS_NCCL && g.backend() == Backend::Nccl);
            // A CPU tensor goes through the group's CUDA device and back.
            let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
            g.all_reduce(&mut t, ReduceOp::Avg).unwrap();
            assert_eq!(values(&t), [1.0, 2.0]);
        }
    }
}

#[test]
fn gloo_takes_a_cuda_tensor_through_the_cpu() {
    if as_rank().is_some() || !tch::Cuda::is_available() {
        return;
    }
    let g = group(0, 1, free_port(), Duration::from_secs(10)).unwrap();
    let mut t = Tensor::from_slice(&[3.0f32]).to_device(tch::Device::Cuda(0));
    g.all_reduce(&mut t, ReduceOp::Sum).unwrap();
    assert_eq!((t.device(), values(&t)), (tch::Device::Cuda(0), vec![3.0]));
}
