//! What `fit` returns: one [`EpochLog`] per finished epoch, train and validation.

use std::collections::BTreeMap;
use std::fmt;

/// The figures of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLog {
    /// 1-based, counting epochs trained before this `fit` too.
    pub epoch: usize,
    pub loss: f64,
    pub metrics: BTreeMap<String, f64>,
    pub val_loss: Option<f64>,
    pub val_metrics: BTreeMap<String, f64>,
    /// The learning rate used during the epoch.
    pub lr: f64,
    pub seconds: f64,
    /// Samples per second over the training part of the epoch.
    pub samples_per_second: f64,
}

impl EpochLog {
    /// A figure by its Keras name: `loss`, `val_loss`, `accuracy`, `val_accuracy`, `lr`, ….
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            "val_loss" => self.val_loss,
            "lr" => Some(self.lr),
            _ => match name.strip_prefix("val_") {
                Some(metric) => self.val_metrics.get(metric).copied(),
                None => self.metrics.get(name).copied(),
            },
        }
    }
}

impl fmt::Display for EpochLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {:3}  loss {:.4}", self.epoch, self.loss)?;
        for (k, v) in &self.metrics {
            write!(f, "  {k} {v:.4}")?;
        }
        if let Some(v) = self.val_loss {
            write!(f, "  val_loss {v:.4}")?;
        }
        for (k, v) in &self.val_metrics {
            write!(f, "  val_{k} {v:.4}")?;
        }
        write!(f, "  lr {:.2e}  {:.1}s  {:.0} samples/s", self.lr, self.seconds, self.samples_per_second)
    }
}

/// The record of a training run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub epochs: Vec<EpochLog>,
    /// True when the user interrupted `fit`; `epochs` holds the epochs that finished.
    pub interrupted: bool,
    /// True when a callback (e.g. EarlyStopping) ended training early.
    pub stopped_early: bool,
}

impl History {
    /// One figure across epochs (`history.get("val_loss")`); epochs without it are skipped.
    pub fn get(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.get(name)).collect()
    }

    pub fn last(&self) -> Option<&EpochLog> {
        self.epochs.last()
    }

    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.epochs {
            writeln!(f, "{e}")?;
        }
        if self.interrupted {
            writeln!(f, "(interrupted: {} complete epochs)", self.epochs.len())?;
        } else if self.stopped_early {
            writeln!(f, "(stopped early after {} epochs)", self.epochs.len())?;
        }
        Ok(())
    }
}
