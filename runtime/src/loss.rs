//! Losses: predictions and targets in, a scalar tensor out, with shape checks that say what
//! was expected.

use crate::error::{Error, Result};
use std::rc::Rc;
use tch::{Kind, Reduction, Tensor};

/// A loss written as a function: `(predictions, targets) → scalar`.
#[derive(Clone)]
pub struct CustomLoss {
    pub name: &'static str,
    function: Rc<dyn Fn(&Tensor, &Tensor) -> Result<Tensor>>,
}

impl std::fmt::Debug for CustomLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomLoss({})", self.name)
    }
}

impl PartialEq for CustomLoss {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.function, &other.function)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// Logits `[batch, classes]` against class ids `[batch]` (or probabilities `[batch, classes]`).
    CrossEntropy { label_smoothing: f64 },
    /// Logits (or probabilities when `from_logits` is false) against 0/1 targets of the same shape.
    BinaryCrossEntropy { from_logits: bool },
    Mse,
    Mae,
    Huber { delta: f64 },
    /// Any function of predictions and targets (e.g. a detector's loss).
    Custom(CustomLoss),
}

impl Loss {
    pub fn cross_entropy() -> Self {
        Loss::CrossEntropy { label_smoothing: 0.0 }
    }

    pub fn cross_entropy_smoothed(label_smoothing: f64) -> Self {
        Loss::CrossEntropy { label_smoothing }
    }

    pub fn binary_cross_entropy() -> Self {
        Loss::BinaryCrossEntropy { from_logits: true }
    }

    pub fn huber(delta: f64) -> Self {
        Loss::Huber { delta }
    }

    /// A loss from a function returning the batch's mean loss as a scalar tensor.
    pub fn custom(name: &'static str, function: Rc<dyn Fn(&Tensor, &Tensor) -> Result<Tensor>>) -> Self {
        Loss::Custom(CustomLoss { name, function })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy { .. } => "cross_entropy",
            Loss::BinaryCrossEntropy { .. } => "binary_cross_entropy",
            Loss::Mse => "mse",
            Loss::Mae => "mae",
            Loss::Huber { .. } => "huber",
            Loss::Custom(custom) => custom.name,
        }
    }

    /// The mean loss of a batch.
    pub fn compute(&self, preds: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let (p, t) = (preds.size(), targets.size());
        match self {
            Loss::Custom(custom) => (custom.function)(preds, targets),
            Loss::CrossEntropy { label_smoothing } => {
                let class_ids = t.len() == 1 && p.len() == 2 && p[0] == t[0];
                let probabilities = t == p && p.len() == 2;
                if !(class_ids || probabilities) {
                    return Err(Error::shape(
                        "cross-entropy targets",
                        format!("[{}] class ids (or [{0}, {}] probabilities) for predictions {p:?}", p.first().unwrap_or(&0), p.get(1).unwrap_or(&0)),
                        &t,
                    ));
                }
                let targets = if class_ids { targets.to_kind(Kind::Int64) } else { targets.shallow_clone() };
                Ok(preds.f_cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, *label_smoothing)?)
            }
            other => {
                let targets = reshape_like(targets, preds, other.name())?;
                Ok(match other {
                    Loss::BinaryCrossEntropy { from_logits: true } => {
                        preds.f_binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::Mean)?
                    }
                    Loss::BinaryCrossEntropy { from_logits: false } => {
                        preds.f_binary_cross_entropy::<Tensor>(&targets, None, Reduction::Mean)?
                    }
                    Loss::Mse => preds.f_mse_loss(&targets, Reduction::Mean)?,
                    Loss::Mae => preds.f_l1_loss(&targets, Reduction::Mean)?,
                    Loss::Huber { delta } => preds.f_huber_loss(&targets, Reduction::Mean, *delta)?,
                    Loss::CrossEntropy { .. } | Loss::Custom(_) => unreachable!("handled above"),
                })
            }
        }
    }
}

/// Element-wise losses need targets shaped like the predictions; `[batch]` targets for
/// `[batch, 1]` predictions are accepted as the common case.
fn reshape_like(targets: &Tensor, preds: &Tensor, loss: &str) -> Result<Tensor> {
    let (p, t) = (preds.size(), targets.size());
    let targets = targets.to_kind(preds.kind());
    if t == p {
        Ok(targets)
    } else if targets.numel() == preds.numel() && t.first() == p.first() {
        Ok(targets.f_reshape(p.as_slice())?)
    } else {
        Err(Error::shape(format!("{loss} targets"), format!("{p:?} (like the predictions)"), &t))
    }
}
