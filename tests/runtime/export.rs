//! TorchScript export: the file loads in tch's `CModule` and computes what the model computes,
//! the sidecar describes it, 16-bit exports halve the file at a measured cost in accuracy, a
//! failed or 16-bit export leaves the model untouched, and mistakes are errors that say what
//! was expected. (Python's `torch.jit.load` is checked by `make bench-serve`, which has full
//! PyTorch.)

use std::path::PathBuf;
use std::time::Instant;
use tch::{CModule, Device, Kind, Tensor};
use torchbook::prelude::*;
use torchbook::Error;

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mlp() -> Model {
    tch::manual_seed(0);
    let net = Sequential::new().add(Dense::new(32)).add(ReLU).add(Dense::new(3));
    Model::build(Box::new(net), &[5], Kind::Float, Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn an_exported_mlp_loads_in_cmodule_and_matches_the_model_on_any_batch_size() {
    let dir = folder("mlp");
    let model = mlp();
    let path = dir.join("models/mlp.pt");
    let report = model.export_torchscript(&path, &Tensor::randn([4, 5], (Kind::Float, Device::Cpu))).unwrap();
    assert!(report.dynamic_batch, "{report}");
    assert!(report.max_abs_diff < 1e-6, "{report}");
    assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());

    let module = CModule::load(&path).unwrap();
    for n in [1, 7, 64] {
        let xs = Tensor::randn([n, 5], (Kind::Float, Device::Cpu));
        let expected = model.predict(&xs, 1000).unwrap();
        let found = tch::no_grad(|| module.forward_ts(&[&xs])).unwrap();
        assert_eq!(found.size(), [n, 3]);
        assert!(max_diff(&found, &expected) < 1e-6, "batch {n}");
    }

    let sidecar: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models/mlp.pt.json")).unwrap()).unwrap();
    assert_eq!(sidecar["format"], "torchbook-torchscript/1");
    assert_eq!(sidecar["input_shape"], serde_json::json!([5]));
    assert_eq!(sidecar["input_dtype"], "float32");
    assert_eq!(sidecar["output_shape"], serde_json::json!([3]));
    assert_eq!(sidecar["precision"], "float32");
    assert_eq!(sidecar["dynamic_batch"], true);
    assert_eq!(sidecar["model_sha256"].as_str().unwrap().len(), 64);
    let names: Vec<_> = std::fs::read_dir(dir.join("models")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "only the model and its sidecar, no temporary files: {names:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_half_precision_export_leaves_the_model_as_it_was() {
    let dir = folder("untouched");
    let model = mlp();
    let xs = Tensor::randn([6, 5], (Kind::Float, Device::Cpu));
    let before = model.predict(&xs, 100).unwrap();
    for precision in [Precision::F16, Precision::BF16] {
        model.export_torchscript_with(dir.join("m.pt"), &xs, precision).unwrap();
    }
    for (name, variable) in model.var_store().variables() {
        assert_eq!(variable.kind(), Kind::Float, "{name}");
        assert!(variable.requires_grad(), "{name} is trainable again");
    }
    assert!(max_diff(&model.predict(&xs, 100).unwrap(), &before) == 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mistakes_are_errors_that_say_what_was_expected() {
    let dir = folder("errors");
    let model = mlp();
    let err = model.export_torchscript(dir.join("m.pt"), &Tensor::zeros([2, 4], (Kind::Float, Device::Cpu))).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
    assert!(err.to_string().contains("expected shape [batch ≥ 1, 5], found [2, 4]"), "{err}");

    let tokens = Model::build(
        Box::new(Sequential::new().add(Embedding::new(20, 4)).add(Flatten).add(Dense::new(2))),
        &[3],
        Kind::Int64,
        Device::Cpu,
    )
    .unwrap();
    let err = tokens.export_torchscript(dir.join("t.pt"), &Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap_err();
    assert!(matches!(err, Error::Export { .. }), "{err:?}");
    assert!(err.to_string().contains("expected an example of integer token ids (int64), found float32 values"), "{err}");
    // A token model exports with integer examples.
    let report = tokens.export_torchscript(dir.join("t.pt"), &Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu))).unwrap();
    assert!(report.max_abs_diff < 1e-6);

    let missing = model.export_torchscript("/nonexistent-torchbook/\0bad/m.pt", &Tensor::zeros([1, 5], (Kind::Float, Device::Cpu)));
    assert!(missing.is_err());
    assert!(!dir.join("m.pt").exists(), "nothing is written when the example is wrong");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_attention_model_is_exported_for_its_example_batch_size_only_and_says_so() {
    let dir = folder("attention");
    tch::manual_seed(0);
    let net = Sequential::new().add(TransformerEncoderLayer::new(8, 2, 16)).add(Flatten).add(Dense::new(2));
    let model = Model::build(Box::new(net), &[4, 8], Kind::Float, Device::Cpu).unwrap();
    let report = model.export_torchscript(dir.join("a.pt"), &Tensor::randn([3, 4, 8], (Kind::Float, Device::Cpu))).unwrap();
    assert!(!report.dynamic_batch, "attention reshapes with the batch size it was traced with: {report}");
    assert_eq!(report.example_batch, 3);
    let sidecar = std::fs::read_to_string(dir.join("a.pt.json")).unwrap();
    assert!(sidecar.contains("\"dynamic_batch\": false"), "{sidecar}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// File size, latency and accuracy of F32, F16 and BF16 exports of a CNN trained on the 8×8
/// digits (`make data`), on its held-out fifth. Prints the figures docs/PERFORMANCE.md quotes.
#[test]
fn sixteen_bit_exports_halve_the_file_and_keep_the_accuracy() {
    let dir = folder("precision");
    tch::manual_seed(0);
    let data = torchbook::datasets::digits().expect("make data");
    let (train, test) = data.split(0.2, 0).unwrap();
    let net = Sequential::new()
        .add(Conv2d::new(16, 3))
        .add(ReLU)
        .add(Flatten)
        .add(Dense::new(64))
        .add(ReLU)
        .add(Dense::new(10));
    let mut model = Model::build(Box::new(net), &[1, 8, 8], Kind::Float, Device::Cpu).unwrap();
    model.compile(Optimizer::adam(3e-3), Loss::cross_entropy(), &[Metric::Accuracy]);
    model.fit(&train, FitOptions { epochs: 6, batch_size: 64, verbose: 0, ..Default::default() }).unwrap();
    let (xs, ys) = (&test.features, &test.targets);
    let eager = model.predict(xs, 1024).unwrap();
    let accuracy = |out: &Tensor| out.argmax(1, false).eq_tensor(ys).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    let reference = accuracy(&eager);
    assert!(reference > 0.85, "the CNN learned the digits: {reference}");

    let example = xs.narrow(0, 0, 8);
    let mut sizes = Vec::new();
    println!("precision | file bytes | max |Δ| vs model | test accuracy | ms per batch of 64");
    for (name, precision) in [("float32", Precision::F32), ("float16", Precision::F16), ("bfloat16", Precision::BF16)] {
        let path = dir.join(format!("{name}.pt"));
        let report = model.export_torchscript_with(&path, &example, precision).unwrap();
        let module = CModule::load(&path).unwrap();
        let out = tch::no_grad(|| module.forward_ts(&[xs])).unwrap();
        assert_eq!(out.kind(), Kind::Float, "16-bit modules still return float32");
        let diff = max_diff(&out, &eager);
        let acc = accuracy(&out);
        let batch = xs.narrow(0, 0, 64);
        // TorchScript's profiling executor optimises the graph over the first runs.
        for _ in 0..10 {
            let _ = tch::no_grad(|| module.forward_ts(&[&batch])).unwrap();
        }
        let start = Instant::now();
        for _ in 0..100 {
            let _ = tch::no_grad(|| module.forward_ts(&[&batch])).unwrap();
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / 100.0;
        println!("{name} | {} | {diff:.2e} | {acc:.4} (model {reference:.4}) | {ms:.3}", report.bytes);
        sizes.push(report.bytes as f64);
        match precision {
            Precision::F32 => assert!(diff < 1e-5, "{diff}"),
            _ => {
                assert!(diff < 0.25, "{name}: {diff}");
                assert!((acc - reference).abs() <= 0.01, "{name}: accuracy {acc} vs {reference}");
            }
        }
    }
    // Weights are most of the file (the graph and archive framing are a few kB).
    assert!(sizes[1] < 0.6 * sizes[0] && sizes[2] < 0.6 * sizes[0], "{sizes:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
