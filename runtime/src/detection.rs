//! Object detection utilities: boxes, IoU, non-maximum suppression, mean average precision, and
//! a single-shot grid detector's target encoding, loss and decoding (YOLO-style: every cell of
//! an S×S grid predicts objectness, one box and class scores for the object whose centre falls
//! in it).
//!
//! Boxes are `[x0, y0, x1, y1]` in any consistent unit (pixels, or fractions of the image).

use crate::error::{Error, Result};
use std::rc::Rc;
use tch::{Kind, Tensor};

/// An axis-aligned box with its class (and, for predictions, a score).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    pub class: usize,
    pub score: f32,
}

impl Detection {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32, class: usize, score: f32) -> Detection {
        Detection { x0, y0, x1, y1, class, score }
    }

    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    /// The box scaled by `factor` (e.g. from fractions to pixels).
    pub fn scaled(&self, factor: f32) -> Detection {
        Detection {
            x0: self.x0 * factor,
            y0: self.y0 * factor,
            x1: self.x1 * factor,
            y1: self.y1 * factor,
            ..*self
        }
    }
}

/// Intersection over union of two boxes; 0 when either is empty.
pub fn iou(a: &Detection, b: &Detection) -> f32 {
    let w = (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0);
    let h = (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0);
    let intersection = w * h;
    let union = a.area() + b.area() - intersection;
    if union <= 0.0 {
        0.0
    } else {
        intersection / union
    }
}

/// Non-maximum suppression per class: keeps the best-scoring box and drops the boxes of the
/// same class that overlap it by more than `iou_threshold`, then repeats. Sorted by score.
pub fn nms(detections: &[Detection], iou_threshold: f32) -> Vec<Detection> {
    let mut sorted = detections.to_vec();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in sorted {
        let suppressed = kept
            .iter()
            .any(|k| k.class == candidate.class && iou(k, &candidate) > iou_threshold);
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

/// Average precision of one class (all-point interpolation, as PASCAL VOC since 2010):
/// `predictions[i]` and `truths[i]` belong to image i. A prediction is a true positive when it
/// overlaps an unmatched true box of its class by at least `iou_threshold`.
pub fn average_precision(
    predictions: &[Vec<Detection>],
    truths: &[Vec<Detection>],
    class: usize,
    iou_threshold: f32,
) -> Option<f32> {
    let total: usize = truths.iter().map(|t| t.iter().filter(|d| d.class == class).count()).sum();
    if total == 0 {
        return None;
    }
    let mut ranked: Vec<(f32, usize, Detection)> = predictions
        .iter()
        .enumerate()
        .flat_map(|(image, ds)| ds.iter().filter(|d| d.class == class).map(move |d| (d.score, image, *d)))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut matched: Vec<Vec<bool>> = truths.iter().map(|t| vec![false; t.len()]).collect();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut curve = Vec::with_capacity(ranked.len());
    for (_, image, prediction) in ranked {
        let best = truths[image]
            .iter()
            .enumerate()
            .filter(|(_, t)| t.class == class)
            .map(|(j, t)| (j, iou(&prediction, t)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((j, overlap)) if overlap >= iou_threshold && !matched[image][j] => {
                matched[image][j] = true;
                tp += 1;
            }
            _ => fp += 1,
        }
        curve.push((tp as f32 / total as f32, tp as f32 / (tp + fp) as f32));
    }
    // Precision envelope: the best precision at this recall or any higher one.
    let mut ap = 0.0;
    let mut previous_recall = 0.0;
    for i in 0..curve.len() {
        let (recall, _) = curve[i];
        if recall > previous_recall {
            let precision = curve[i..].iter().map(|c| c.1).fold(0.0, f32::max);
            ap += (recall - previous_recall) * precision;
            previous_recall = recall;
        }
    }
    Some(ap)
}

/// The mean of the per-class average precisions over classes that have true boxes.
pub fn mean_average_precision(
    predictions: &[Vec<Detection>],
    truths: &[Vec<Detection>],
    classes: usize,
    iou_threshold: f32,
) -> f32 {
    let aps: Vec<f32> = (0..classes)
        .filter_map(|c| average_precision(predictions, truths, c, iou_threshold))
        .collect();
    if aps.is_empty() {
        0.0
    } else {
        aps.iter().sum::<f32>() / aps.len() as f32
    }
}

/// A single-shot detector's grid: `cells`×`cells` over the image, `classes` object classes.
/// Network outputs are `[batch, 5 + classes, cells, cells]`: objectness logit, box (x and y
/// offsets in the cell and width and height as fractions of the image, all through a sigmoid),
/// then class logits. Targets are `[batch, cells, cells, 6]`: objectness, x0, y0, x1, y1 (as
/// fractions of the image), class id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSpec {
    pub cells: i64,
    pub classes: i64,
}

impl GridSpec {
    pub fn new(cells: i64, classes: i64) -> GridSpec {
        GridSpec { cells, classes }
    }

    /// Channels the network's last layer must produce.
    pub fn outputs(&self) -> i64 {
        5 + self.classes
    }

    /// Targets for one image's boxes (in fractions of the image). An object goes to the cell
    /// that holds its centre; when two share a cell, the larger one wins.
    pub fn encode(&self, boxes: &[Detection]) -> Tensor {
        let s = self.cells as usize;
        let mut values = vec![0f32; s * s * 6];
        let mut area_in_cell = vec![0f32; s * s];
        for b in boxes {
            let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
            let col = ((cx * s as f32) as usize).min(s - 1);
            let row = ((cy * s as f32) as usize).min(s - 1);
            let cell = row * s + col;
            if b.area() <= area_in_cell[cell] {
                continue;
            }
            area_in_cell[cell] = b.area();
            values[cell * 6..cell * 6 + 6].copy_from_slice(&[1.0, b.x0, b.y0, b.x1, b.y1, b.class as f32]);
        }
        Tensor::from_slice(&values).reshape([self.cells, self.cells, 6])
    }

    /// Predicted boxes as `[batch, cells, cells, 4]` corners in fractions of the image.
    fn boxes(&self, outputs: &Tensor) -> Tensor {
        let s = self.cells as f64;
        let p = outputs.permute([0, 2, 3, 1]);
        let offsets = p.narrow(3, 1, 4).sigmoid();
        let device = outputs.device();
        let grid = Tensor::arange(self.cells, (Kind::Float, device));
        let col = grid.view([1, 1, -1]);
        let row = grid.view([1, -1, 1]);
        let cx = (offsets.select(3, 0) + col) / s;
        let cy = (offsets.select(3, 1) + row) / s;
        let (w, h) = (offsets.select(3, 2), offsets.select(3, 3));
        Tensor::stack(&[&cx - &w / 2.0, &cy - &h / 2.0, &cx + &w / 2.0, &cy + &h / 2.0], 3)
    }

    /// The detector's loss: objectness (binary cross-entropy over every cell, with positives
    /// weighted up because they are few), `1 − IoU` of the predicted and true boxes plus a small
    /// L1 term on the corners, and class cross-entropy, the last two in cells with an object.
    pub fn loss(&self, outputs: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let (o, t) = (outputs.size(), targets.size());
        let expected_o = [o.first().copied().unwrap_or(0), self.outputs(), self.cells, self.cells];
        if o != expected_o {
            return Err(Error::shape("detector outputs", format!("{expected_o:?}"), &o));
        }
        let expected_t = [o[0], self.cells, self.cells, 6];
        if t != expected_t {
            return Err(Error::shape("detector targets", format!("{expected_t:?}"), &t));
        }
        let p = outputs.permute([0, 2, 3, 1]);
        let objectness = targets.select(3, 0);
        let positive = objectness.gt(0.5);
        let positives = positive.sum(Kind::Float).clamp_min(1.0);
        let weight = positive.to_kind(Kind::Float) * 4.0 + 1.0;
        let object_loss = p
            .select(3, 0)
            .binary_cross_entropy_with_logits::<&Tensor>(&objectness, Some(&weight), None, tch::Reduction::Mean);

        let predicted = self.boxes(outputs);
        let truth = targets.narrow(3, 1, 4);
        let iou = box_iou_tensor(&predicted, &truth);
        let mask = positive.to_kind(Kind::Float);
        let box_loss = (iou.neg().g_add_scalar(1.0) * &mask).sum(Kind::Float) / &positives;
        let l1 = ((&predicted - &truth).abs().sum_dim_intlist(3, false, Kind::Float) * &mask).sum(Kind::Float)
            / &positives;

        let logits = p.narrow(3, 5, self.classes).reshape([-1, self.classes]);
        let classes = targets.select(3, 5).reshape([-1]).to_kind(Kind::Int64);
        let per_cell = logits.cross_entropy_loss::<Tensor>(&classes, None, tch::Reduction::None, -100, 0.0);
        let class_loss = (per_cell * mask.reshape([-1])).sum(Kind::Float) / &positives;
        Ok(object_loss + box_loss + l1 * 0.5 + class_loss)
    }

    /// A [`crate::loss::Loss`] for `Model::compile`.
    pub fn as_loss(self) -> crate::loss::Loss {
        crate::loss::Loss::custom("detection", Rc::new(move |p: &Tensor, t: &Tensor| self.loss(p, t)))
    }

    /// Detections for each image of a batch of outputs: cells whose objectness × class
    /// probability is at least `min_score`, then NMS at `iou_threshold`. Boxes are in fractions
    /// of the image.
    pub fn decode(&self, outputs: &Tensor, min_score: f32, iou_threshold: f32) -> Vec<Vec<Detection>> {
        let outputs = outputs.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let p = outputs.permute([0, 2, 3, 1]);
        let objectness = p.select(3, 0).sigmoid();
        let probabilities = p.narrow(3, 5, self.classes).softmax(-1, Kind::Float);
        let (best, class) = probabilities.max_dim(3, false);
        let scores = (objectness * best).reshape([outputs.size()[0], -1]);
        let classes = class.reshape([outputs.size()[0], -1]);
        let boxes = self.boxes(&outputs).reshape([outputs.size()[0], -1, 4]);
        let scores = Vec::<f32>::try_from(scores.reshape([-1])).unwrap_or_default();
        let classes = Vec::<i64>::try_from(classes.reshape([-1])).unwrap_or_default();
        let boxes = Vec::<f32>::try_from(boxes.reshape([-1])).unwrap_or_default();
        let per_image = (self.cells * self.cells) as usize;
        (0..outputs.size()[0] as usize)
            .map(|image| {
                let found: Vec<Detection> = (0..per_image)
                    .map(|cell| image * per_image + cell)
                    .filter(|&i| scores[i] >= min_score)
                    .map(|i| {
                        let b = &boxes[i * 4..i * 4 + 4];
                        Detection::new(b[0], b[1], b[2], b[3], classes[i] as usize, scores[i])
                    })
                    .collect();
                nms(&found, iou_threshold)
            })
            .collect()
    }
}

/// Element-wise IoU of two `[…, 4]` corner tensors (differentiable).
fn box_iou_tensor(a: &Tensor, b: &Tensor) -> Tensor {
    let (ax0, ay0, ax1, ay1) = (a.select(-1, 0), a.select(-1, 1), a.select(-1, 2), a.select(-1, 3));
    let (bx0, by0, bx1, by1) = (b.select(-1, 0), b.select(-1, 1), b.select(-1, 2), b.select(-1, 3));
    let w = (ax1.minimum(&bx1) - ax0.maximum(&bx0)).clamp_min(0.0);
    let h = (ay1.minimum(&by1) - ay0.maximum(&by0)).clamp_min(0.0);
    let intersection = w * h;
    let area_a = (&ax1 - &ax0).clamp_min(0.0) * (&ay1 - &ay0).clamp_min(0.0);
    let area_b = (&bx1 - &bx0).clamp_min(0.0) * (&by1 - &by0).clamp_min(0.0);
    &intersection / (area_a + area_b - &intersection + 1e-6)
}
