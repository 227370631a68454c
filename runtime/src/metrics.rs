//! Stateful metrics, accumulated over batches on the device (no host sync per batch) and read
//! once per epoch. Classification metrics take logits/probabilities `[batch, classes]` and class
//! ids `[batch]`; with a single output column, a logit above 0 means class 1.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Accuracy,
    /// The target is among the `k` highest-scoring classes.
    TopK(i64),
    /// Macro-averaged over classes.
    Precision,
    Recall,
    F1,
    /// Not a scalar: available from `Evaluation::confusion_matrix`.
    ConfusionMatrix,
}

impl Metric {
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::TopK(k) => format!("top{k}_accuracy"),
            Metric::Precision => "precision".into(),
            Metric::Recall => "recall".into(),
            Metric::F1 => "f1".into(),
            Metric::ConfusionMatrix => "confusion_matrix".into(),
        }
    }
}

/// Predicted class ids from model outputs.
pub fn predicted_classes(preds: &Tensor) -> Result<Tensor> {
    let size = preds.size();
    match size.as_slice() {
        [_, 1] | [_] => Ok(preds.f_reshape([-1])?.f_gt(0.0)?.to_kind(Kind::Int64)),
        [_, _] => Ok(preds.f_argmax(-1, false)?),
        _ => Err(Error::shape("classification metric", "[batch, classes] or [batch]", &size)),
    }
}

fn classes_of(preds: &Tensor) -> i64 {
    match preds.size().as_slice() {
        [_, c] if *c > 1 => *c,
        _ => 2,
    }
}

/// Accumulates every requested metric for one pass over data.
#[derive(Debug)]
pub struct MetricSet {
    metrics: Vec<Metric>,
    correct: Option<Tensor>,
    topk_correct: BTreeMap<i64, Tensor>,
    seen: i64,
    confusion: Option<Tensor>,
}

impl MetricSet {
    pub fn new(metrics: &[Metric]) -> Self {
        MetricSet {
            metrics: metrics.to_vec(),
            correct: None,
            topk_correct: BTreeMap::new(),
            seen: 0,
            confusion: None,
        }
    }

    fn needs_confusion(&self) -> bool {
        self.metrics.iter().any(|m| {
            matches!(m, Metric::Precision | Metric::Recall | Metric::F1 | Metric::ConfusionMatrix)
        })
    }

    /// Adds one batch.
    pub fn update(&mut self, preds: &Tensor, targets: &Tensor) -> Result<()> {
        if self.metrics.is_empty() {
            return Ok(());
        }
        let targets = targets.f_reshape([-1])?.to_kind(Kind::Int64);
        if targets.size()[0] != preds.size()[0] {
            return Err(Error::shape("metric targets", format!("[{}] class ids", preds.size()[0]), &targets.size()));
        }
        let predicted = predicted_classes(preds)?;
        self.seen += targets.size()[0];
        if self.metrics.contains(&Metric::Accuracy) {
            let hits = predicted.f_eq_tensor(&targets)?.f_sum(Kind::Int64)?;
            self.correct = Some(match self.correct.take() {
                Some(c) => c.f_add(&hits)?,
                None => hits,
            });
        }
        for metric in &self.metrics {
            if let Metric::TopK(k) = metric {
                let classes = classes_of(preds);
                let top = preds.f_topk((*k).min(classes), -1, true, true)?.1;
                let hits = top.f_eq_tensor(&targets.f_unsqueeze(1)?)?.f_any_dim(1, false)?.f_sum(Kind::Int64)?;
                let entry = self.topk_correct.entry(*k).or_insert_with(|| Tensor::from(0i64).to_device(preds.device()));
                *entry = entry.f_add(&hits)?;
            }
        }
        if self.needs_confusion() {
            let c = classes_of(preds);
            let index = targets.f_mul_scalar(c)?.f_add(&predicted)?;
            let counts = index.f_bincount::<Tensor>(None, c * c)?.f_reshape([c, c])?;
            self.confusion = Some(match self.confusion.take() {
                Some(m) if m.size() == counts.size() => m.f_add(&counts)?,
                _ => counts,
            });
        }
        Ok(())
    }

    /// Sums every count across ranks with `sum` (an all-reduce), so each rank's values are
    /// the whole data's. Every rank must hold the same metrics and have seen ≥ 1 batch.
    pub(crate) fn sum_across(&mut self, mut sum: impl FnMut(&mut Tensor) -> Result<()>) -> Result<()> {
        let mut seen = Tensor::from(self.seen);
        sum(&mut seen)?;
        self.seen = seen.int64_value(&[]);
        if let Some(c) = self.correct.as_mut() {
            sum(c)?;
        }
        for c in self.topk_correct.values_mut() {
            sum(c)?;
        }
        if let Some(m) = self.confusion.as_mut() {
            *m = m.f_contiguous()?;
            sum(m)?;
        }
        Ok(())
    }

    /// Rows: true class, columns: predicted class.
    pub fn confusion_matrix(&self) -> Option<Tensor> {
        self.confusion.as_ref().map(|c| c.to_device(tch::Device::Cpu))
    }

    /// The scalar metrics by name.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let seen = self.seen.max(1) as f64;
        for metric in &self.metrics {
            let value = match metric {
                Metric::Accuracy => self.correct.as_ref().map(|c| c.int64_value(&[]) as f64 / seen),
                Metric::TopK(k) => self.topk_correct.get(k).map(|c| c.int64_value(&[]) as f64 / seen),
                Metric::Precision | Metric::Recall | Metric::F1 => self.macro_average(metric),
                Metric::ConfusionMatrix => None,
            };
            if let Some(v) = value {
                out.insert(metric.name(), v);
            }
        }
        out
    }

    fn macro_average(&self, metric: &Metric) -> Option<f64> {
        let m = self.confusion.as_ref()?.to_device(tch::Device::Cpu).to_kind(Kind::Double);
        let c = m.size()[0];
        let (mut total, mut counted) = (0.0, 0);
        for class in 0..c {
            let tp = m.double_value(&[class, class]);
            let predicted = m.get(class).sum(Kind::Double).double_value(&[]); // row: true class
            let actual_col = m.select(1, class).sum(Kind::Double).double_value(&[]);
            let (true_count, predicted_count) = (predicted, actual_col);
            if true_count == 0.0 && predicted_count == 0.0 {
                continue; // class absent from this data: it does not count in the average
            }
            let precision = if predicted_count > 0.0 { tp / predicted_count } else { 0.0 };
            let recall = if true_count > 0.0 { tp / true_count } else { 0.0 };
            total += match metric {
                Metric::Precision => precision,
                Metric::Recall => recall,
                _ if precision + recall > 0.0 => 2.0 * precision * recall / (precision + recall),
                _ => 0.0,
            };
            counted += 1;
        }
        Some(if counted == 0 { 0.0 } else { total / counted as f64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_metrics() {
        // Predictions: classes 0,1,1,2 ; truth: 0,1,2,2
        let preds = Tensor::from_slice2(&[[5.0f32, 0., 0.], [0., 5., 0.], [0., 5., 1.], [0., 0., 5.]]);
        let targets = Tensor::from_slice(&[0i64, 1, 2, 2]);
        let mut set = MetricSet::new(&[Metric::Accuracy, Metric::Precision, Metric::Recall, Metric::F1, Metric::TopK(2)]);
        set.update(&preds, &targets).unwrap();
        let v = set.values();
        assert!((v["accuracy"] - 0.75).abs() < 1e-9);
        // precision per class: 1, 0.5, 1 -> 0.8333; recall: 1, 1, 0.5 -> 0.8333
        assert!((v["precision"] - 2.5 / 3.0).abs() < 1e-9, "{v:?}");
        assert!((v["recall"] - 2.5 / 3.0).abs() < 1e-9);
        // f1 per class: 1, 2/3, 2/3
        assert!((v["f1"] - (1.0 + 4.0 / 3.0) / 3.0).abs() < 1e-9);
        assert!((v["top2_accuracy"] - 1.0).abs() < 1e-9);
        let cm = set.confusion_matrix().unwrap();
        assert_eq!(cm.int64_value(&[2, 1]), 1);
    }

    #[test]
    fn accumulates_over_batches_and_checks_shapes() {
        let mut set = MetricSet::new(&[Metric::Accuracy]);
        set.update(&Tensor::from_slice2(&[[1.0f32, 0.]]), &Tensor::from_slice(&[0i64])).unwrap();
        set.update(&Tensor::from_slice2(&[[1.0f32, 0.]]), &Tensor::from_slice(&[1i64])).unwrap();
        assert!((set.values()["accuracy"] - 0.5).abs() < 1e-9);
        let err = set.update(&Tensor::from_slice2(&[[1.0f32, 0.]]), &Tensor::from_slice(&[1i64, 0])).unwrap_err();
        assert!(err.to_string().contains("metric targets"), "{err}");
    }
}
