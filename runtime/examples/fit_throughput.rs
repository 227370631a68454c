//! Training throughput of `Model::fit` against a plain tch loop (tch's own C++ Adam), on the
//! DESIGN §5 models: MLP 784-256-128-10 and a small CNN, batch 128, Adam, 2 threads.
//! Prints one JSON line per measured epoch; `benches/fit_throughput.py` alternates this with
//! PyTorch eager and reports medians.
//!
//! Usage: fit_throughput <fit|plain> <mlp|cnn> <epochs>

use std::time::Instant;
use tch::nn::{self, Module, OptimizerConfig};
use torchbook::prelude::*;

const BATCH: i64 = 128;

fn data(model: &str) -> (Tensor, Tensor) {
    tch::manual_seed(0);
    let n = if model == "mlp" { 128 * 200 } else { 128 * 40 };
    let xs = match model {
        "mlp" => Tensor::randn([n, 784], (Kind::Float, Device::Cpu)),
        _ => Tensor::randn([n, 1, 28, 28], (Kind::Float, Device::Cpu)),
    };
    let ys = Tensor::randint(10, [n], (Kind::Int64, Device::Cpu));
    (xs, ys)
}

fn torchbook_net(model: &str) -> Sequential {
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

fn plain_net(vs: &nn::Path, model: &str) -> nn::Sequential {
    match model {
        "mlp" => nn::seq()
            .add(nn::linear(vs / "l1", 784, 256, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(vs / "l2", 256, 128, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(vs / "l3", 128, 10, Default::default())),
        _ => nn::seq()
            .add(nn::conv2d(vs / "c1", 1, 16, 3, Default::default()))
            .add_fn(|x| x.relu().max_pool2d_default(2))
            .add(nn::conv2d(vs / "c2", 16, 32, 3, Default::default()))
            .add_fn(|x| x.relu().max_pool2d_default(2).flatten(1, -1))
            .add(nn::linear(vs / "l", 32 * 5 * 5, 10, Default::default())),
    }
}

fn main() -> torchbook::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, model, epochs) = (args[1].as_str(), args[2].as_str(), args[3].parse::<usize>().unwrap());
    tch::set_num_threads(2);
    let (xs, ys) = data(model);
    let n = xs.size()[0];
    let input: Vec<i64> = xs.size()[1..].to_vec();
    match mode {
        "fit" => {
            let mut m = Model::build(Box::new(torchbook_net(model)), &input, Kind::Float, Device::Cpu)?;
            m.compile(Optimizer::adam(1e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
            let data = Dataset::new(xs, ys)?;
            for epoch in 0..=epochs {
                let started = Instant::now();
                m.fit(&data, FitOptions { epochs: 1, batch_size: BATCH, verbose: 0, seed: epoch as u64, ..Default::default() })?;
                if epoch > 0 {
                    report(mode, model, n, started);
                }
            }
        }
        _ => {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = plain_net(&vs.root(), model);
            let mut opt = nn::Adam::default().build(&vs, 1e-3)?;
            for epoch in 0..=epochs {
                let started = Instant::now();
                let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
                let mut start = 0;
                while start < n {
                    let size = BATCH.min(n - start);
                    let idx = perm.narrow(0, start, size);
                    let (x, y) = (xs.index_select(0, &idx), ys.index_select(0, &idx));
                    let loss = net.forward(&x).cross_entropy_for_logits(&y);
                    opt.backward_step(&loss);
                    start += size;
                }
                if epoch > 0 {
                    report(mode, model, n, started);
                }
            }
        }
    }
    Ok(())
}

fn report(mode: &str, model: &str, n: i64, started: Instant) {
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("{{\"impl\": \"{mode}\", \"model\": \"{model}\", \"samples_per_second\": {rate:.1}}}");
}
