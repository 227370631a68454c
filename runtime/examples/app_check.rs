use torchbook::prelude::*;
use std::time::Instant;

fn digits() -> torchbook::Result<()> {
    manual_seed(0);
    let all = datasets::digits()?;
    let (train, test) = all.split(0.2, 42)?;
    let train = train.with_transform(RandomCrop { padding: 1 });
    let net = Sequential::new()
        .add(Conv2d::new(32, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(Conv2d::new(32, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(64, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(GlobalAvgPool)
        .add(Dropout(0.3))
        .add(Dense::new(10));
    let mut model = Model::new(net, &[1, 8, 8])?;
    model.compile(Optimizer::adam(3e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    let t = Instant::now();
    let h = model.fit(&train, FitOptions { epochs: 30, batch_size: 64, validation: Validation::Split(0.1), verbose: 2, ..Default::default() })?;
    let e = model.evaluate(&test, 256)?;
    println!("digits: test {:?} in {:.1}s, epochs {}", e.metrics, t.elapsed().as_secs_f64(), h.len());
    Ok(())
}

fn detection() -> torchbook::Result<()> {
    manual_seed(0);
    let grid = GridSpec::new(8, 3);
    let train = datasets::shapes(&datasets::ShapesConfig { images: 3000, seed: 1, ..Default::default() })?;
    let test = datasets::shapes(&datasets::ShapesConfig { images: 300, seed: 2, ..Default::default() })?;
    let net = Sequential::new()
        .add(Conv2d::new(16, 3).same()).add(BatchNorm2d::new()).add(ReLU).add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 3).same()).add(BatchNorm2d::new()).add(ReLU).add(MaxPool2d::new(2))
        .add(Conv2d::new(64, 3).same()).add(BatchNorm2d::new()).add(ReLU).add(MaxPool2d::new(2))
        .add(Conv2d::new(64, 3).same()).add(BatchNorm2d::new()).add(ReLU)
        .add(Conv2d::new(grid.outputs(), 1));
    let mut model = Model::new(net, &[3, 64, 64])?;
    model.compile(Optimizer::adam(2e-3), grid.as_loss(), &[]);
    let t = Instant::now();
    let epochs: usize = std::env::var("EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    model.fit(&train.dataset(&grid)?, FitOptions { epochs, batch_size: 32, verbose: 2, ..Default::default() })?;
    let out = model.predict(&test.images, 128)?;
    let preds = grid.decode(&out, 0.2, 0.5);
    let map = detection::mean_average_precision(&preds, &test.boxes, 3, 0.5);
    println!("detection: mAP@0.5 {map:.3} in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}

fn text() -> torchbook::Result<()> {
    manual_seed(0);
    let langs = ["de", "fr", "es", "pl", "fi", "tr", "nl", "sv"];
    let corpus = datasets::message_catalogues(&langs, 15)?;
    println!("{} texts", corpus.texts.len());
    let n = corpus.texts.len();
    let order = Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu));
    let order: Vec<i64> = Vec::try_from(order)?;
    let cut = n * 8 / 10;
    let pick = |idx: &[i64]| -> (Vec<String>, Vec<i64>) { (idx.iter().map(|&i| corpus.texts[i as usize].clone()).collect(), idx.iter().map(|&i| corpus.labels[i as usize]).collect()) };
    let (train_x, train_y) = pick(&order[..cut]);
    let (test_x, test_y) = pick(&order[cut..]);
    let tok = Tokenizer::chars(&train_x, 3, 64);
    let train = Dataset::new(tok.encode_batch(&train_x), Tensor::from_slice(&train_y))?;
    let test = Dataset::new(tok.encode_batch(&test_x), Tensor::from_slice(&test_y))?;
    let net = Sequential::new()
        .add(Embedding::new(tok.vocab_size(), 32))
        .add(LSTM::new(64).bidirectional().return_sequences())
        .add(Lambda::new("max over time", |x| x.amax(1, false)))
        .add(Dropout(0.2))
        .add(Dense::new(langs.len() as i64));
    let mut model = Model::for_tokens(net, &[64])?;
    model.compile(Optimizer::adam(3e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    let t = Instant::now();
    let epochs: usize = std::env::var("EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    model.fit(&train, FitOptions { epochs, batch_size: 64, validation: Validation::Split(0.1), verbose: 2, ..Default::default() })?;
    let e = model.evaluate(&test, 256)?;
    println!("text: test {:?} in {:.1}s", e.metrics, t.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> torchbook::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("digits") => digits(),
        Some("detection") => detection(),
        Some("text") => text(),
        _ => { digits()?; detection()?; text() }
    }
}
