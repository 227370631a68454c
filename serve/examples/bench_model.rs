//! The model `make bench-serve` serves: the quickstart's MLP (784-256-128-10) trained for two
//! epochs on 4,000 of the 5,000 MNIST digits (`make data`), exported in float32, float16 and
//! bfloat16, with the other 1,000 digits, their labels and the model's own outputs saved as
//! raw little-endian tensors, so `benches/serve_bench.py` can check PyTorch's
//! `torch.jit.load` against the model and measure each precision.
//!
//! Usage: bench_model OUT_DIR

use std::path::PathBuf;
use torchbook::prelude::*;

fn write_raw(path: PathBuf, tensor: &Tensor) {
    let tensor = tensor.contiguous();
    let mut bytes = vec![0u8; tensor.numel() * tensor.kind().elt_size_in_bytes()];
    tensor.copy_data_u8(&mut bytes, tensor.numel());
    std::fs::write(path, bytes).unwrap();
}

fn main() -> torchbook::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: bench_model OUT_DIR"));
    std::fs::create_dir_all(&out).unwrap();
    tch::manual_seed(0);
    let data = torchbook::datasets::mnist_5k()?.shuffled(0)?;
    let (train, test) = data.split(0.2, 0)?;
    let net = Sequential::new().add(Flatten).add(Dense::new(256)).add(ReLU).add(Dense::new(128)).add(ReLU).add(Dense::new(10));
    let mut model = Model::build(Box::new(net), &[1, 28, 28], Kind::Float, Device::Cpu)?;
    model.compile(Optimizer::adam(1e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    model.fit(&train, FitOptions { epochs: 2, batch_size: 64, verbose: 0, ..Default::default() })?;
    let example = test.features.narrow(0, 0, 8);
    for (name, precision) in [("mlp", Precision::F32), ("mlp-f16", Precision::F16), ("mlp-bf16", Precision::BF16)] {
        let report = model.export_torchscript_with(out.join(format!("{name}.pt")), &example, precision)?;
        println!("{report}");
    }
    write_raw(out.join("test_x.f32"), &test.features);
    write_raw(out.join("test_y.i64"), &test.targets);
    write_raw(out.join("expected.f32"), &model.predict(&test.features, 1000)?);
    println!("test set: {} examples; accuracy of the model: {:.4}", test.len(), model.evaluate(&test, 1000)?.metrics["accuracy"]);
    Ok(())
}
