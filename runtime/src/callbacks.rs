//! Callbacks hook into `fit`: early stopping, checkpoints, learning-rate schedules and plain
//! closures. Each sees a [`TrainContext`] through which it can read the weights, change the
//! learning rate or stop training.

use crate::error::Result;
use crate::history::EpochLog;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Tensor};

/// What a callback may look at and change during `fit`.
pub struct TrainContext<'a> {
    pub var_store: &'a nn::VarStore,
    /// The learning rate for the next epoch.
    pub lr: f64,
    /// The learning rate `fit` started with.
    pub initial_lr: f64,
    /// Set to true to end training after this epoch.
    pub stop: bool,
}

pub trait Callback {
    fn on_train_begin(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Called after each batch with the batch index in the epoch and the batch loss.
    fn on_batch_end(&mut self, _ctx: &mut TrainContext, _batch: usize, _loss: &Tensor) -> Result<()> {
        Ok(())
    }
    fn on_epoch_end(&mut self, _ctx: &mut TrainContext, _log: &EpochLog) -> Result<()> {
        Ok(())
    }
    fn on_train_end(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Whether `on_batch_end` is implemented; skipped per batch otherwise.
    fn wants_batches(&self) -> bool {
        false
    }
}

fn minimise(monitor: &str) -> bool {
    !(monitor.contains("acc") || monitor.contains("precision") || monitor.contains("recall") || monitor.contains("f1"))
}

fn improved(value: f64, best: Option<f64>, min_delta: f64, minimise: bool) -> bool {
    match best {
        None => true,
        Some(b) if minimise => value < b - min_delta,
        Some(b) => value > b + min_delta,
    }
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

fn restore(vs: &nn::VarStore, saved: &HashMap<String, Tensor>) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vs.variables() {
            if let Some(src) = saved.get(&name) {
                var.f_copy_(src)?;
            }
        }
        Ok(())
    })
}

/// Stops when `monitor` (default `val_loss`) has not improved for `patience` epochs; with
/// `restore_best_weights`, puts back the weights of the best epoch.
pub struct EarlyStopping {
    pub monitor: String,
    pub patience: usize,
    pub min_delta: f64,
    pub restore_best_weights: bool,
    best: Option<f64>,
    best_weights: Option<HashMap<String, Tensor>>,
    waited: usize,
    /// The epoch with the best value, once known.
    pub best_epoch: Option<usize>,
}

impl EarlyStopping {
    pub fn new(monitor: &str, patience: usize) -> Self {
        EarlyStopping {
            monitor: monitor.to_owned(),
            patience,
            min_delta: 0.0,
            restore_best_weights: false,
            best: None,
            best_weights: None,
            waited: 0,
            best_epoch: None,
        }
    }

    pub fn restore_best_weights(mut self) -> Self {
        self.restore_best_weights = true;
        self
    }

    pub fn min_delta(mut self, d: f64) -> Self {
        self.min_delta = d;
        self
    }
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, ctx: &mut TrainContext, log: &EpochLog) -> Result<()> {
        let Some(value) = log.get(&self.monitor) else {
            return Err(crate::Error::Usage(format!(
                "EarlyStopping monitors {:?}, which this fit does not produce (is there validation data?)",
                self.monitor
            )));
        };
        if improved(value, self.best, self.min_delta, minimise(&self.monitor)) {
            self.best = Some(value);
            self.best_epoch = Some(log.epoch);
            self.waited = 0;
            if self.restore_best_weights {
                self.best_weights = Some(snapshot(ctx.var_store));
            }
        } else {
            self.waited += 1;
            if self.waited >= self.patience {
                ctx.stop = true;
            }
        }
        Ok(())
    }

    fn on_train_end(&mut self, ctx: &mut TrainContext) -> Result<()> {
        if let Some(saved) = &self.best_weights {
            restore(ctx.var_store, saved)?;
        }
        Ok(())
    }
}

/// Saves the weights (safetensors) after epochs; with `save_best_only`, only when `monitor`
/// improved. `{epoch}` in the path is replaced by the epoch number. With `.encrypted(&key)`
/// every file is sealed (age) before it is written.
pub struct ModelCheckpoint {
    pub path: PathBuf,
    pub monitor: String,
    pub save_best_only: bool,
    key: Option<crate::secure::Key>,
    best: Option<f64>,
    /// Files written so far.
    pub saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            save_best_only: false,
            key: None,
            best: None,
            saved: Vec::new(),
        }
    }

    /// Seals every checkpoint with `key` (read them back with
    /// `model.load_weights(secure::encrypted(path, &key))`).
    pub fn encrypted(mut self, key: &crate::secure::Key) -> Self {
        self.key = Some(key.clone());
        self
    }

    pub fn save_best_only(mut self, monitor: &str) -> Self {
        self.save_best_only = true;
        self.monitor = monitor.to_owned();
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, ctx: &mut TrainContext, log: &EpochLog) -> Result<()> {
        if self.save_best_only {
            let value = log.get(&self.monitor).ok_or_else(|| {
                crate::Error::Usage(format!("ModelCheckpoint monitors {:?}, which this fit does not produce", self.monitor))
            })?;
            if !improved(value, self.best, 0.0, minimise(&self.monitor)) {
                return Ok(());
            }
            self.best = Some(value);
        }
        let path = PathBuf::from(self.path.to_string_lossy().replace("{epoch}", &log.epoch.to_string()));
        let file = crate::secure::DataPath {
            path: path.clone(),
            key: self.key.clone(),
        };
        // In data-parallel training every rank holds the same weights: rank 0 writes them,
        // as DDP users do, instead of every rank racing on one file.
        if crate::distributed::rank() == 0 {
            crate::checkpoint::save_weights(ctx.var_store, &file)?;
        }
        self.saved.push(path);
        Ok(())
    }
}

/// Learning-rate schedules, applied at the end of each epoch for the next one.
pub enum LrSchedule {
    /// Multiply by `gamma` every `step_size` epochs.
    Step { step_size: usize, gamma: f64 },
    /// Multiply by `gamma` every epoch.
    Exponential { gamma: f64 },
    /// Cosine from the initial rate down to `min_lr` over `t_max` epochs.
    Cosine { t_max: usize, min_lr: f64 },
    /// Multiply by `factor` when `monitor` has not improved for `patience` epochs.
    ReduceOnPlateau { monitor: String, factor: f64, patience: usize, min_lr: f64, best: Option<f64>, waited: usize },
}

impl LrSchedule {
    pub fn reduce_on_plateau(monitor: &str, factor: f64, patience: usize) -> Self {
        LrSchedule::ReduceOnPlateau { monitor: monitor.into(), factor, patience, min_lr: 0.0, best: None, waited: 0 }
    }
}

impl Callback for LrSchedule {
    fn on_epoch_end(&mut self, ctx: &mut TrainContext, log: &EpochLog) -> Result<()> {
        let e = log.epoch as f64;
        ctx.lr = match self {
            LrSchedule::Step { step_size, gamma } => ctx.initial_lr * gamma.powi((log.epoch / (*step_size).max(1)) as i32),
            LrSchedule::Exponential { gamma } => ctx.initial_lr * gamma.powf(e),
            LrSchedule::Cosine { t_max, min_lr } => {
                let progress = (e / (*t_max).max(1) as f64).min(1.0);
                *min_lr + (ctx.initial_lr - *min_lr) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
            LrSchedule::ReduceOnPlateau { monitor, factor, patience, min_lr, best, waited } => {
                let value = log.get(monitor).ok_or_else(|| {
                    crate::Error::Usage(format!("ReduceOnPlateau monitors {monitor:?}, which this fit does not produce"))
                })?;
                if improved(value, *best, 0.0, minimise(monitor)) {
                    *best = Some(value);
                    *waited = 0;
                    ctx.lr
                } else {
                    *waited += 1;
                    if *waited >= *patience {
                        *waited = 0;
                        (ctx.lr * *factor).max(*min_lr)
                    } else {
                        ctx.lr
                    }
                }
            }
        };
        Ok(())
    }
}

/// A closure run after every epoch.
pub struct OnEpochEnd<F: FnMut(&EpochLog)>(pub F);

impl<F: FnMut(&EpochLog)> Callback for OnEpochEnd<F> {
    fn on_epoch_end(&mut self, _ctx: &mut TrainContext, log: &EpochLog) -> Result<()> {
        (self.0)(log);
        Ok(())
    }
}

/// A closure run after every batch with the batch index and loss.
pub struct OnBatchEnd<F: FnMut(usize, f64)>(pub F);

impl<F: FnMut(usize, f64)> Callback for OnBatchEnd<F> {
    fn on_batch_end(&mut self, _ctx: &mut TrainContext, batch: usize, loss: &Tensor) -> Result<()> {
        (self.0)(batch, loss.double_value(&[]));
        Ok(())
    }

    fn wants_batches(&self) -> bool {
        true
    }
}
