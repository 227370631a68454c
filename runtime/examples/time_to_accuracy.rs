//! Time to accuracy of `Model::fit` on the application notebooks' tasks (`make bench-apps`):
//! the MNIST CNN of `02-image-classification` and the character LSTM of
//! `04-text-classification`, with the notebooks' data, split, architecture, batch size,
//! optimizer and schedule. One `fit` with the held-out split as validation data; after every
//! epoch one JSON line with the seconds since training started and the held-out accuracy.
//! `benches/time_to_accuracy.py` runs the same in PyTorch eager, alternating, on the tensors
//! that `export` writes (so both sides see the same split and tokens).
//!
//! Usage: time_to_accuracy run <image|text> <epochs> <seed>
//!        time_to_accuracy export <image|text> <dir>

use std::io::Write;
use std::path::Path;
use std::time::Instant;
use torchbook::prelude::*;
use torchbook::Error;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What one task trains: data, network and the notebook's settings.
struct Task {
    train: Dataset,
    test: Dataset,
    augmented: Dataset,
    model: Model,
    /// Per-epoch learning-rate decay (1.0: constant).
    gamma: f64,
    batch_size: i64,
    /// Token vocabulary size (text), 0 for images.
    vocab: i64,
}

/// The notebook's image classifier (02-image-classification).
pub fn image_net() -> Sequential {
    Sequential::new()
        .add(Conv2d::new(16, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(Conv2d::new(16, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(Conv2d::new(32, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Flatten)
        .add(Dropout(0.3))
        .add(Dense::new(128)).add(ReLU)
        .add(Dense::new(10))
}

fn image_task(seed: u64) -> Result<Task> {
    let (train, test) = datasets::mnist_5k()?.split(0.2, 42)?;
    tch::manual_seed(seed as i64);
    let augmented = train.clone().with_transform(RandomCrop { padding: 2 }).with_transform(RandomRotation { degrees: 10.0 });
    let mut model = Model::new(image_net(), &[1, 28, 28])?;
    model.compile(Optimizer::adam(2e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    Ok(Task { train, test, augmented, model, gamma: 0.85, batch_size: 64, vocab: 0 })
}

/// The notebook's language classifier (04-text-classification), its split and tokenizer.
fn text_task(seed: u64) -> Result<Task> {
    let languages = ["de", "fr", "es", "pl", "fi", "tr", "nl", "sv"];
    let corpus = datasets::message_catalogues(&languages, 15)?;
    let n = corpus.texts.len() as i64;
    tch::manual_seed(0);
    let order: Vec<i64> = Vec::try_from(Tensor::randperm(n, (Kind::Int64, Device::Cpu)))?;
    let cut = (n * 8 / 10) as usize;
    let take = |ids: &[i64]| -> (Vec<String>, Vec<i64>) {
        (ids.iter().map(|&i| corpus.texts[i as usize].clone()).collect(), ids.iter().map(|&i| corpus.labels[i as usize]).collect())
    };
    let (train_texts, train_labels) = take(&order[..cut]);
    let (test_texts, test_labels) = take(&order[cut..]);
    let tokenizer = Tokenizer::chars(&train_texts, 3, 64);
    tch::manual_seed(seed as i64);
    let train = Dataset::new(tokenizer.encode_batch(&train_texts), Tensor::from_slice(&train_labels))?;
    let test = Dataset::new(tokenizer.encode_batch(&test_texts), Tensor::from_slice(&test_labels))?;
    let net = Sequential::new()
        .add(Embedding::new(tokenizer.vocab_size(), 32))
        .add(LSTM::new(64).bidirectional().return_sequences())
        .add(Lambda::new("max over time", |x| x.amax(1, false)))
        .add(Dropout(0.2))
        .add(Dense::new(languages.len() as i64));
    let vocab = tokenizer.vocab_size();
    let mut model = Model::for_tokens(net, &[64])?;
    model.compile(Optimizer::adam(3e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    Ok(Task { augmented: train.clone(), train, test, model, gamma: 1.0, batch_size: 64, vocab })
}

/// The task's data (always the same split) and its model, initialised from `seed`.
fn task(name: &str, seed: u64) -> Result<Task> {
    match name {
        "image" => image_task(seed),
        "text" => text_task(seed),
        other => Err(Error::Usage(format!("unknown task {other:?}: expected image or text")).into()),
    }
}

/// Writes a tensor's raw little-endian bytes and returns its description for `meta.json`.
fn write_raw(dir: &Path, name: &str, tensor: &Tensor) -> Result<String> {
    let tensor = tensor.contiguous();
    let (dtype, bytes): (&str, Vec<u8>) = match tensor.kind() {
        Kind::Float => ("float32", Vec::<f32>::try_from(tensor.flatten(0, -1))?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Kind::Int64 => ("int64", Vec::<i64>::try_from(tensor.flatten(0, -1))?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        other => return Err(Error::Usage(format!("export: unexpected dtype {other:?} for {name}")).into()),
    };
    std::fs::write(dir.join(format!("{name}.bin")), bytes)?;
    Ok(format!("\"{name}\": {{\"dtype\": \"{dtype}\", \"shape\": {:?}}}", tensor.size()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: time_to_accuracy run <image|text> <epochs> <seed> | export <image|text> <dir>";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    tch::set_num_threads(2);
    match args[1].as_str() {
        "export" => {
            let t = task(&args[2], 0)?;
            let dir = Path::new(&args[3]);
            std::fs::create_dir_all(dir)?;
            let entries = [
                write_raw(dir, "train_x", &t.train.features)?,
                write_raw(dir, "train_y", &t.train.targets)?,
                write_raw(dir, "test_x", &t.test.features)?,
                write_raw(dir, "test_y", &t.test.targets)?,
            ];
            let mut meta = std::fs::File::create(dir.join("meta.json"))?;
            writeln!(meta, "{{{}, \"gamma\": {}, \"batch_size\": {}, \"vocab\": {}}}", entries.join(", "), t.gamma, t.batch_size, t.vocab)?;
        }
        "run" => {
            let name = args[2].clone();
            let epochs: usize = args[3].parse().map_err(|_| Error::Usage(usage.into()))?;
            let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut t = task(&name, seed)?;
            let started = Instant::now();
            t.model.fit(&t.augmented, FitOptions {
                epochs,
                batch_size: t.batch_size,
                // The PyTorch twin evaluates in batches of 500 too.
                validation_batch_size: Some(500),
                verbose: 0,
                seed,
                validation: Validation::Data(t.test),
                callbacks: vec![
                    Box::new(LrSchedule::Exponential { gamma: t.gamma }),
                    Box::new(OnEpochEnd(move |log: &EpochLog| {
                        let accuracy = log.get("val_accuracy").unwrap_or(f64::NAN);
                        let seconds = started.elapsed().as_secs_f64();
                        println!("{{\"impl\": \"torchbook\", \"task\": \"{name}\", \"epoch\": {}, \"seconds\": {seconds:.3}, \"accuracy\": {accuracy:.4}}}", log.epoch);
                    })),
                ],
                ..Default::default()
            })?;
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    Ok(())
}
