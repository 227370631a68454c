//! Training end to end on small learnable tasks: fit reaches a stated accuracy, callbacks stop
//! and restore, checkpoints round-trip, and an interrupt returns a partial History.

use std::cell::RefCell;
use std::rc::Rc;
use torchbook::interrupt;
use torchbook::prelude::*;

/// Points in [-1, 1]²; class 1 when x·y > 0 (an XOR pattern: needs a hidden layer).
fn xor_data(n: i64, seed: i64) -> Dataset {
    tch::manual_seed(seed);
    let xs = Tensor::rand([n, 2], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let ys = (xs.select(1, 0) * xs.select(1, 1)).gt(0.0).to_kind(Kind::Int64);
    Dataset::new(xs, ys).unwrap()
}

fn mlp() -> Model {
    tch::manual_seed(7);
    let net = Sequential::new().add(Dense::new(32)).add(ReLU).add(Dense::new(32)).add(ReLU).add(Dense::new(2));
    Model::build(Box::new(net), &[2], Kind::Float, Device::Cpu).unwrap()
}

fn options(epochs: usize) -> FitOptions {
    FitOptions { epochs, batch_size: 32, verbose: 0, ..Default::default() }
}

#[test]
fn fit_learns_xor_to_95_percent() {
    let train = xor_data(2000, 1);
    let test = xor_data(500, 2);
    let mut model = mlp();
    model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy, Metric::F1, Metric::ConfusionMatrix]);
    let history = model
        .fit(&train, FitOptions { validation: Validation::Split(0.2), ..options(30) })
        .unwrap();
    assert_eq!(history.len(), 30);
    assert!(history.get("loss")[29] < history.get("loss")[0]);
    assert_eq!(history.get("val_accuracy").len(), 30);
    let eval = model.evaluate(&test, 128).unwrap();
    assert!(eval.metrics["accuracy"] >= 0.95, "held-out accuracy {:?}", eval.metrics);
    assert!(eval.metrics["f1"] >= 0.9);
    let cm = eval.confusion_matrix.unwrap();
    assert_eq!(cm.sum(Kind::Int64).int64_value(&[]), 500);
    let preds = model.predict(&test.features, 64).unwrap();
    assert_eq!(preds.size(), [500, 2]);
}

#[test]
fn every_optimizer_and_loss_trains() {
    let train = xor_data(1000, 3);
    for optimizer in [
        Optimizer::sgd(0.1).momentum(0.9).nesterov(),
        Optimizer::adamw(1e-2).weight_decay(1e-4),
        Optimizer::rmsprop(1e-3).clip_grad_norm(1.0),
        Optimizer::adam(1e-2).clip_grad_value(0.5).weight_decay(1e-5),
    ] {
        let label = format!("{:?}", optimizer.rule);
        let mut model = mlp();
        model.compile(optimizer, Loss::cross_entropy_smoothed(0.05), &[Metric::Accuracy]);
        let h = model.fit(&train, options(15)).unwrap();
        assert!(h.get("accuracy").last().unwrap() > &0.85, "{label}: {:?}", h.get("accuracy"));
    }
    // Regression losses on y = 2x + 1.
    for loss in [Loss::Mse, Loss::Mae, Loss::huber(1.0)] {
        tch::manual_seed(0);
        let xs = Tensor::rand([256, 1], (Kind::Float, Device::Cpu));
        let ys = &xs * 2.0 + 1.0;
        let data = Dataset::new(xs, ys).unwrap();
        let mut model = Model::build(Box::new(Dense::new(1)), &[1], Kind::Float, Device::Cpu).unwrap();
        model.compile(Optimizer::adam(5e-2), loss.clone(), &[]);
        let h = model.fit(&data, options(60)).unwrap();
        assert!(h.get("loss").last().unwrap() < &0.05, "{loss:?}: {:?}", h.get("loss").last());
    }
}

#[test]
fn binary_cross_entropy_with_one_logit() {
    let train = xor_data(1000, 4);
    tch::manual_seed(3);
    let net = Sequential::new().add(Dense::new(32)).add(Tanh).add(Dense::new(1));
    let mut model = Model::build(Box::new(net), &[2], Kind::Float, Device::Cpu).unwrap();
    model.compile(Optimizer::adam(2e-2), Loss::binary_cross_entropy(), &[Metric::Accuracy]);
    let h = model.fit(&train, options(25)).unwrap();
    assert!(h.get("accuracy").last().unwrap() > &0.9, "{:?}", h.get("accuracy"));
}

#[test]
fn wrong_targets_are_clear_errors() {
    let mut model = mlp();
    model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
    let xs = Tensor::zeros([10, 2], (Kind::Float, Device::Cpu));
    let bad = Dataset::new(xs.shallow_clone(), Tensor::zeros([10, 3], (Kind::Float, Device::Cpu))).unwrap();
    let err = model.fit(&bad, options(1)).unwrap_err();
    assert!(err.to_string().starts_with("cross-entropy targets: expected shape"), "{err}");
    let err = Dataset::new(xs, Tensor::zeros([9], (Kind::Int64, Device::Cpu))).unwrap_err();
    assert!(err.to_string().contains("one target per sample"), "{err}");
    let mut uncompiled = mlp();
    let err = uncompiled.fit(&xor_data(10, 1), options(1)).unwrap_err();
    assert!(err.to_string().contains("compile"), "{err}");
}

#[test]
fn early_stopping_stops_and_restores_best_weights() {
    /// Makes the model worse after every epoch, so the first epoch stays the best.
    struct Spoil;
    impl Callback for Spoil {
        fn on_epoch_end(&mut self, ctx: &mut TrainContext, _log: &EpochLog) -> TorchbookResult<()> {
            tch::no_grad(|| {
                for (_, mut v) in ctx.var_store.variables() {
                    let _ = v.f_add_scalar_(0.5);
                }
            });
            Ok(())
        }
    }
    let data = xor_data(400, 5);
    let mut model = mlp();
    model.compile(Optimizer::sgd(0.0), Loss::cross_entropy(), &[]);
    let before: Vec<Tensor> = model.var_store().trainable_variables().iter().map(|t| t.copy()).collect();
    let callbacks: Vec<Box<dyn Callback>> = vec![Box::new(EarlyStopping::new("val_loss", 2).restore_best_weights()), Box::new(Spoil)];
    let h = model
        .fit(&data, FitOptions { validation: Validation::Split(0.25), callbacks, ..options(20) })
        .unwrap();
    assert!(h.stopped_early);
    assert_eq!(h.len(), 3, "best at 1, then two epochs without improvement");
    for (a, b) in before.iter().zip(model.var_store().trainable_variables()) {
        assert!(a.allclose(&b, 1e-6, 1e-6, false), "weights of epoch 1 are back");
    }
    let err = mlp_compiled().fit(&data, FitOptions { callbacks: vec![Box::new(EarlyStopping::new("val_loss", 1))], ..options(2) }).unwrap_err();
    assert!(err.to_string().contains("validation"), "{err}");
}

fn mlp_compiled() -> Model {
    let mut m = mlp();
    m.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
    m
}

#[test]
fn lr_schedules_change_the_rate() {
    let data = xor_data(64, 6);
    let mut model = mlp_compiled();
    let h = model
        .fit(&data, FitOptions { callbacks: vec![Box::new(LrSchedule::Step { step_size: 2, gamma: 0.5 })], ..options(5) })
        .unwrap();
    assert_eq!(h.get("lr"), vec![1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3]);
    let mut model = mlp_compiled();
    let h = model.fit(&data, FitOptions { callbacks: vec![Box::new(LrSchedule::Cosine { t_max: 4, min_lr: 0.0 })], ..options(5) }).unwrap();
    let lr = h.get("lr");
    assert!((lr[2] - 5e-3).abs() < 1e-12 && lr[4].abs() < 1e-12, "{lr:?}");
    let mut model = mlp_compiled();
    let h = model.fit(&data, FitOptions { callbacks: vec![Box::new(LrSchedule::Exponential { gamma: 0.1 })], ..options(3) }).unwrap();
    assert!((h.get("lr")[2] - 1e-4).abs() < 1e-12);
}

#[test]
fn closures_see_every_epoch_and_batch() {
    let data = xor_data(100, 7);
    let epochs = Rc::new(RefCell::new(Vec::new()));
    let batches = Rc::new(RefCell::new(0));
    let (e, b) = (epochs.clone(), batches.clone());
    let callbacks: Vec<Box<dyn Callback>> = vec![
        Box::new(OnEpochEnd(move |log: &EpochLog| e.borrow_mut().push(log.epoch))),
        Box::new(OnBatchEnd(move |_, loss| {
            assert!(loss.is_finite());
            *b.borrow_mut() += 1;
        })),
    ];
    mlp_compiled().fit(&data, FitOptions { callbacks, ..options(3) }).unwrap();
    assert_eq!(*epochs.borrow(), vec![1, 2, 3]);
    assert_eq!(*batches.borrow(), 3 * 4, "100 samples in batches of 32");
}

#[test]
fn interrupt_during_fit_returns_partial_history() {
    let data = xor_data(320, 8);
    let mut model = mlp_compiled();
    let callbacks: Vec<Box<dyn Callback>> = vec![Box::new(OnBatchEnd(|batch, _| {
        if batch == 3 && torchbook::interrupt::interrupt_pending() == false {
            static ONCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            // Second epoch, fourth batch.
            if ONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                interrupt::request_interrupt();
            }
        }
    }))];
    let h = model.fit(&data, FitOptions { callbacks, ..options(10) }).unwrap();
    assert!(h.interrupted);
    assert_eq!(h.len(), 1, "one complete epoch before the interrupt");
    assert_eq!(model.epochs_trained(), 1);
    // The model is intact and the next call runs normally.
    let eval = model.evaluate(&data, 64).unwrap();
    assert!(eval.loss.is_finite());
    let h = model.fit(&data, options(1)).unwrap();
    assert!(!h.interrupted);
    assert_eq!(h.epochs[0].epoch, 2);
}

#[test]
fn weights_and_checkpoints_round_trip() {
    let dir = std::env::temp_dir().join(format!("torchbook-ckpt-{}", std::process::id()));
    let data = xor_data(256, 9);
    let mut model = mlp_compiled();
    model.fit(&data, options(2)).unwrap();
    let weights = dir.join("w.safetensors");
    model.save_weights(&weights).unwrap();
    let mut other = mlp();
    other.load_weights(&weights).unwrap();
    let probe = data.features.narrow(0, 0, 8);
    assert!(model.predict(&probe, 8).unwrap().allclose(&other.predict(&probe, 8).unwrap(), 1e-6, 1e-6, false));

    // Another shape of model: refused, naming the tensor, and left unchanged.
    let mut wide = Model::build(Box::new(Sequential::new().add(Dense::new(64)).add(ReLU).add(Dense::new(32)).add(ReLU).add(Dense::new(2))), &[2], Kind::Float, Device::Cpu).unwrap();
    let untouched = wide.var_store().trainable_variables()[0].copy();
    let err = wide.load_weights(&weights).unwrap_err().to_string();
    assert!(err.contains("tensor \"0.bias\": expected shape [64], found shape [32]"), "{err}");
    assert!(untouched.equal(&wide.var_store().trainable_variables()[0]));
    let err = other.load_weights(dir.join("missing.safetensors")).unwrap_err().to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
    std::fs::write(dir.join("junk.safetensors"), b"not a tensor file").unwrap();
    assert!(other.load_weights(dir.join("junk.safetensors")).is_err());

    // Whole checkpoint: weights, optimizer state and epoch.
    let ckpt = dir.join("run.ckpt.safetensors");
    model.save_checkpoint(&ckpt).unwrap();
    let mut resumed = mlp_compiled();
    assert_eq!(resumed.load_checkpoint(&ckpt).unwrap(), 2);
    let continued = resumed.fit(&data, FitOptions { shuffle: false, ..options(1) }).unwrap();
    let reference = model.fit(&data, FitOptions { shuffle: false, ..options(1) }).unwrap();
    assert_eq!(continued.epochs[0].epoch, 3);
    assert!((continued.epochs[0].loss - reference.epochs[0].loss).abs() < 1e-5, "same state, same next epoch");
    let mut sgd = mlp();
    sgd.compile(Optimizer::sgd(0.1).momentum(0.9), Loss::cross_entropy(), &[]);
    let err = sgd.load_checkpoint(&ckpt);
    assert!(err.is_ok(), "SGD with momentum needs one buffer; Adam's checkpoint has it");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn validation_batch_size_changes_speed_not_results() {
    let train = xor_data(600, 3);
    let val = xor_data(203, 4);
    let run = |validation_batch_size| {
        let mut model = mlp();
        model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
        let history = model
            .fit(&train, FitOptions { validation: Validation::Data(val.clone()), validation_batch_size, ..options(3) })
            .unwrap();
        (history.get("val_loss"), history.get("val_accuracy"))
    };
    let (loss_small, accuracy_small) = run(None);
    let (loss_large, accuracy_large) = run(Some(1000));
    assert_eq!(accuracy_small, accuracy_large);
    for (a, b) in loss_small.iter().zip(&loss_large) {
        assert!((a - b).abs() < 1e-5, "val_loss {a} with batches of 32, {b} in one batch");
    }
    let mut model = mlp();
    model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
    let err = model
        .fit(&train, FitOptions { validation: Validation::Data(val.clone()), validation_batch_size: Some(0), ..options(1) })
        .unwrap_err()
        .to_string();
    assert!(err.contains("validation_batch_size 0"), "{err}");
}
