//! Data-parallel training throughput of `Model::fit` (one rank of `make bench-ddp`): the models
//! of `fit_throughput` (MLP 784-256-128-10 and a small CNN, batch 128 per rank, Adam), one
//! intra-op and one inter-op thread per process. With `WORLD_SIZE` set (torchrun's variables, as
//! `benches/ddp_throughput.py` sets them) the process joins the group and `fit` is data-parallel;
//! without it, it runs alone. Every rank builds the same data (same seed); after a warm-up epoch,
//! each timed epoch starts and ends at a barrier, and rank 0 prints one JSON line with the global
//! samples/s (the samples of all ranks over the epoch's wall time).
//! `benches/pytorch_ddp.py` is the PyTorch DDP twin.
//!
//! Usage: ddp_throughput <mlp|cnn> <epochs> [samples]

use std::time::Instant;
use torchbook::distributed;
use torchbook::prelude::*;

const BATCH: i64 = 128;

/// Samples per epoch (all ranks together) unless given: a few seconds per epoch on one core.
fn default_samples(model: &str) -> i64 {
    if model == "mlp" {
        128 * 1000
    } else {
        128 * 100
    }
}

fn data(model: &str, n: i64) -> (Tensor, Tensor) {
    tch::manual_seed(0);
    let xs = match model {
        "mlp" => Tensor::randn([n, 784], (Kind::Float, Device::Cpu)),
        _ => Tensor::randn([n, 1, 28, 28], (Kind::Float, Device::Cpu)),
    };
    let ys = Tensor::randint(10, [n], (Kind::Int64, Device::Cpu));
    (xs, ys)
}

fn net(model: &str) -> Sequential {
    match model {
        "mlp" => Sequential::new().add(Dense::new(256)).add(ReLU).add(Dense::new(128)).add(ReLU).add(Dense::new(10)),
        _ => Sequential::new()
            .add(Conv2d::new(16, 3))
            .add(ReLU)
            .add(MaxPool2d::new(2))
            .add(Conv2d::new(32, 3))
            .add(ReLU)
            .add(MaxPool2d::new(2))
            .add(Flatten)
            .add(Dense::new(10)),
    }
}

fn main() -> torchbook::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || !matches!(args[1].as_str(), "mlp" | "cnn") {
        eprintln!("usage: ddp_throughput <mlp|cnn> <epochs> [samples]");
        std::process::exit(2);
    }
    let model = args[1].as_str();
    let epochs: usize = args[2].parse().expect("epochs: a number");
    let n: i64 = args.get(3).map_or_else(|| default_samples(model), |s| s.parse().expect("samples: a number"));
    tch::set_num_threads(1);
    tch::set_num_interop_threads(1);
    if std::env::var_os("WORLD_SIZE").is_some() {
        distributed::init_from_env()?;
    }
    let (rank, world) = (distributed::rank(), distributed::world_size());

    let (xs, ys) = data(model, n);
    let input: Vec<i64> = xs.size()[1..].to_vec();
    let mut m = Model::build(Box::new(net(model)), &input, Kind::Float, Device::Cpu)?;
    m.compile(Optimizer::adam(1e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    let data = Dataset::new(xs, ys)?;
    // Epoch 0 is the warm-up.
    for epoch in 0..=epochs {
        distributed::barrier()?;
        let started = Instant::now();
        let options = FitOptions { epochs: 1, batch_size: BATCH, verbose: 0, seed: epoch as u64, ..Default::default() };
        m.fit(&data, options)?;
        distributed::barrier()?;
        let seconds = started.elapsed().as_secs_f64();
        // Every rank's samples, the shards' padding included (as PyTorch's DistributedSampler's).
        let seen = shard_total(n, world);
        if epoch > 0 && rank == 0 {
            println!(
                "{{\"impl\": \"torchbook\", \"model\": \"{model}\", \"world_size\": {world}, \"samples\": {seen}, \"seconds\": {seconds:.4}, \"samples_per_second\": {:.1}}}",
                seen as f64 / seconds
            );
        }
    }
    distributed::destroy();
    Ok(())
}

/// Samples all ranks process in one epoch: every rank takes ⌈n / world⌉.
fn shard_total(n: i64, world: usize) -> i64 {
    let world = world as i64;
    (n + world - 1) / world * world
}
