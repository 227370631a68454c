//! `fit` across processes: each test re-runs this binary once per rank (`TB_DIST_RANK` set),
//! every rank trains the same model on its shard, and the parent compares what the ranks
//! print with each other and with a single process trained on the concatenated batches.

use std::process::{Command, Output, Stdio};
use std::time::Duration;
use torchbook::data::shard_order;
use torchbook::distributed::{self, GroupConfig};
use torchbook::prelude::*;

fn as_rank() -> Option<(usize, usize, u16)> {
    let rank = std::env::var("TB_DIST_RANK").ok()?.parse().ok()?;
    let world = std::env::var("TB_DIST_WORLD").ok()?.parse().ok()?;
    let port = std::env::var("TB_DIST_PORT").ok()?.parse().ok()?;
    Some((rank, world, port))
}

fn run_ranks(test: &str, world: usize) -> Vec<Output> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env("TB_DIST_RANK", rank.to_string())
                .env("TB_DIST_WORLD", world.to_string())
                .env("TB_DIST_PORT", port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// The line a rank printed after `tag`.
fn printed(output: &Output, tag: &str) -> String {
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "a rank failed:\n{out}\n{err}");
    out.lines().find_map(|l| l.split_once(tag).map(|(_, rest)| rest)).unwrap_or_else(|| panic!("no {tag:?} in:\n{out}\n{err}")).to_string()
}

/// Points in [-1, 1]²; class 1 when x·y > 0.
fn xor_data(n: i64) -> Dataset {
    tch::manual_seed(11);
    let xs = Tensor::rand([n, 2], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let ys = (xs.select(1, 0) * xs.select(1, 1)).gt(0.0).to_kind(Kind::Int64);
    Dataset::new(xs, ys).unwrap()
}

fn model() -> Model {
    // Every rank initialises differently on purpose: fit must start them all from rank 0's.
    tch::manual_seed(7 + distributed::rank() as i64);
    let net = Sequential::new().add(Dense::new(16)).add(ReLU).add(Dense::new(2));
    let mut model = Model::build(Box::new(net), &[2], Kind::Float, Device::Cpu).unwrap();
    model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
    model
}

fn weights(model: &Model) -> Vec<f32> {
    let mut named: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.iter().flat_map(|(_, t)| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()).collect()
}

/// 512 samples, batches of 32 per rank: 8 steps per epoch at 2 ranks, 4 at 4 ranks.
fn train(batch_size: i64, epochs: usize) -> (Vec<f32>, History) {
    let mut model = model();
    let history = model
        .fit(&xor_data(512), FitOptions { epochs, batch_size, verbose: 0, seed: 5, ..Default::default() })
        .unwrap();
    (weights(&model), history)
}

fn data_parallel_matches_one_process(test: &str, world: usize) {
    if let Some((rank, world, port)) = as_rank() {
        distributed::init(&GroupConfig::new("127.0.0.1", port, rank, world).timeout(Duration::from_secs(60))).unwrap();
        let (w, history) = train(32, 2);
        println!("weights {w:?}");
        println!("loss {:?} accuracy {:?}", history.get("loss"), history.get("accuracy"));
        distributed::destroy();
        return;
    }
    let outputs = run_ranks(test, world);
    let first = printed(&outputs[0], "weights ");
    for (rank, output) in outputs.iter().enumerate() {
        assert_eq!(printed(output, "weights "), first, "rank {rank}'s weights differ from rank 0's");
        assert_eq!(printed(output, "loss "), printed(&outputs[0], "loss "), "rank {rank}'s History differs");
    }
    // One process, batches of 32 × world: the union of the ranks' batches, step by step.
    let (single, history) = train(32 * world as i64, 2);
    let parallel: Vec<f32> = first.trim_matches(['[', ']']).split(", ").map(|v| v.parse().unwrap()).collect();
    assert_eq!(parallel.len(), single.len());
    for (i, (a, b)) in parallel.iter().zip(&single).enumerate() {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "weight {i}: data-parallel {a}, one process {b}");
    }
    // The History is the whole data's: the same loss as one process's, within rounding.
    let line = printed(&outputs[0], "loss ");
    let losses: Vec<f64> = line.split(" accuracy ").next().unwrap().trim_matches(['[', ']']).split(", ").map(|v| v.parse().unwrap()).collect();
    for (a, b) in losses.iter().zip(history.get("loss")) {
        assert!((a - b).abs() < 1e-4, "loss {a} data-parallel, {b} one process");
    }
}

#[test]
fn two_ranks_train_like_one_process_on_the_concatenated_batch() {
    data_parallel_matches_one_process("two_ranks_train_like_one_process_on_the_concatenated_batch", 2);
}

#[test]
fn four_ranks_train_like_one_process_on_the_concatenated_batch() {
    data_parallel_matches_one_process("four_ranks_train_like_one_process_on_the_concatenated_batch", 4);
}

#[test]
fn shards_are_disjoint_cover_the_data_and_have_equal_lengths() {
    for (n, world) in [(10, 2), (10, 3), (7, 4), (3, 4), (1000, 4)] {
        let shards: Vec<Vec<i64>> = (0..world).map(|r| shard_order(n, Some(9), r, world)).collect();
        let len = n.div_ceil(world);
        assert!(shards.iter().all(|s| s.len() == len), "n {n}, world {world}: {shards:?}");
        let mut all: Vec<i64> = shards.concat();
        all.sort();
        all.dedup();
        assert_eq!(all, (0..n as i64).collect::<Vec<_>>(), "n {n}, world {world}: every sample in some shard");
        if n % world == 0 {
            assert_eq!(shards.concat().len(), n, "no padding when it divides");
        }
    }
}

fn trained_model() -> Model {
    let mut model = model();
    // 576 = 6 × 96: no padding and no short last batch, so 3 ranks step like one process.
    model.fit(&xor_data(576), FitOptions { epochs: 2, batch_size: 32, verbose: 0, seed: 5, ..Default::default() }).unwrap();
    model
}

#[test]
fn evaluate_and_predict_shard_and_gather() {
    // 301 rows: the ranks' parts differ in size.
    let data = xor_data(301);
    if let Some((rank, world, port)) = as_rank() {
        distributed::init(&GroupConfig::new("127.0.0.1", port, rank, world).timeout(Duration::from_secs(60))).unwrap();
        let model = trained_model();
        let evaluation = model.evaluate(&data, 16).unwrap();
        let predictions = model.predict(&data.features, 16).unwrap();
        println!("evaluate {} {:?}", evaluation.loss, evaluation.metrics);
        println!("predict {:?}", Vec::<f32>::try_from(predictions.flatten(0, -1)).unwrap());
        distributed::destroy();
        return;
    }
    let outputs = run_ranks("evaluate_and_predict_shard_and_gather", 3);
    // One process, its own model: trained on batches of 96 = 3 × 32 to the same weights.
    let mut model = model();
    model.fit(&xor_data(576), FitOptions { epochs: 2, batch_size: 96, verbose: 0, seed: 5, ..Default::default() }).unwrap();
    let evaluation = model.evaluate(&data, 16).unwrap();
    let predictions: Vec<f32> = Vec::try_from(model.predict(&data.features, 16).unwrap().flatten(0, -1)).unwrap();
    for output in &outputs {
        let line = printed(output, "evaluate ");
        let (loss, metrics) = line.split_once(' ').unwrap();
        assert!((loss.parse::<f64>().unwrap() - evaluation.loss).abs() < 1e-4, "{line} vs {}", evaluation.loss);
        assert_eq!(metrics, format!("{:?}", evaluation.metrics), "every rank's accuracy is the whole data's");
        let gathered: Vec<f32> =
            printed(output, "predict ").trim_matches(['[', ']']).split(", ").map(|v| v.parse().unwrap()).collect();
        assert_eq!(gathered.len(), predictions.len(), "all 301 rows gathered");
        for (a, b) in gathered.iter().zip(&predictions) {
            assert!((a - b).abs() < 1e-3, "prediction {a} gathered, {b} in one process");
        }
    }
}

#[test]
fn an_interrupt_on_one_rank_stops_every_rank_at_the_same_batch() {
    if let Some((rank, world, port)) = as_rank() {
        distributed::init(&GroupConfig::new("127.0.0.1", port, rank, world).timeout(Duration::from_secs(60))).unwrap();
        let mut model = model();
        // Rank 1 is interrupted after its 4th batch of the first epoch (8 per epoch); rank 0 never is.
        let callbacks: Vec<Box<dyn Callback>> = vec![Box::new(OnBatchEnd(move |batch, _| {
            if rank == 1 && batch == 3 {
                torchbook::interrupt::request_interrupt();
            }
        }))];
        let history = model
            .fit(&xor_data(512), FitOptions { epochs: 5, batch_size: 32, verbose: 0, seed: 5, callbacks, ..Default::default() })
            .unwrap();
        println!("interrupted {} epochs {}", history.interrupted, history.len());
        println!("weights {:?}", weights(&model));
        distributed::destroy();
        return;
    }
    let outputs = run_ranks("an_interrupt_on_one_rank_stops_every_rank_at_the_same_batch", 2);
    for output in &outputs {
        assert_eq!(printed(output, "interrupted "), "true epochs 0", "both stop in the first epoch");
    }
    assert_eq!(printed(&outputs[0], "weights "), printed(&outputs[1], "weights "), "neither stepped alone");
}
