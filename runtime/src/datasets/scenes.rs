//! Object-detection scenes: images with their boxes and classes, the form every detection data
//! set here takes ([`Scenes`]), and scenes made of real MNIST digits ([`digit_scenes`]): one to
//! five digits at random scales and positions on a noisy background, seeded.

use crate::data::Dataset;
use crate::detection::{Detection, GridSpec};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use tch::{Kind, Tensor};

/// Class names of digit scenes, in class-id order.
pub const DIGIT_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Images `[n, channels, size, size]` and, per image, its boxes in fractions of the image.
pub struct Scenes {
    pub images: Tensor,
    pub boxes: Vec<Vec<Detection>>,
    pub size: usize,
}

impl Scenes {
    /// Detector targets for a grid (see [`GridSpec::encode`]): `[n, cells, cells, 6]`.
    pub fn targets(&self, grid: &GridSpec) -> Tensor {
        let encoded: Vec<Tensor> = self.boxes.iter().map(|b| grid.encode(b)).collect();
        Tensor::stack(&encoded, 0)
    }

    /// A `Dataset` of images and grid targets, ready for `fit`.
    pub fn dataset(&self, grid: &GridSpec) -> Result<Dataset> {
        Dataset::new(self.images.shallow_clone(), self.targets(grid))
    }

    /// Boxes of image `i` in pixels, e.g. for drawing.
    pub fn pixel_boxes(&self, i: usize) -> Vec<Detection> {
        self.boxes[i].iter().map(|b| b.scaled(self.size as f32)).collect()
    }

    /// Number of objects over all images.
    pub fn objects(&self) -> usize {
        self.boxes.iter().map(Vec::len).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DigitScenesConfig {
    pub images: usize,
    /// Side of the square, one-channel images, in pixels.
    pub size: usize,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Smallest and largest side a 28×28 digit is scaled to, in pixels (its box is the ink's,
    /// a little smaller).
    pub min_side: usize,
    pub max_side: usize,
    /// Standard deviation of the Gaussian pixel noise (pixel values are in [0, 1]).
    pub noise: f32,
    /// Cells per side of the grid no two digit centres may share (the detector's grid).
    pub grid_cells: usize,
    pub seed: u64,
}

impl Default for DigitScenesConfig {
    fn default() -> Self {
        DigitScenesConfig {
            images: 1000,
            size: 64,
            min_objects: 1,
            max_objects: 5,
            min_side: 18,
            max_side: 32,
            noise: 0.1,
            grid_cells: 8,
            seed: 0,
        }
    }
}

/// Pixels above this count as ink when a digit's box is measured.
const INK: f32 = 0.25;

/// Scenes of the digits in `digits` (features `[n, 1, 28, 28]` in [0, 1], targets the class
/// 0–9): each image has `min_objects..=max_objects` digits (fewer when no free place is found
/// after 100 tries), scaled to a random side, placed where their ink boxes do not touch and no
/// two centres share a grid cell, over a background of random grey level plus Gaussian noise.
/// Boxes are the ink's. Scenes for evaluation should take their digits from a held-out split.
pub fn digit_scenes(digits: &Dataset, config: &DigitScenesConfig) -> Result<Scenes> {
    let c = config;
    let shape = digits.features.size();
    if shape.len() != 4 || shape[1] != 1 {
        return Err(Error::shape("digit_scenes digits", "[n, 1, height, width]", &shape));
    }
    if c.size < 16 || c.min_side < 8 || c.max_side < c.min_side || c.max_side > c.size || c.max_objects < c.min_objects || c.grid_cells == 0 {
        return Err(Error::Usage(format!("digit_scenes: inconsistent config {c:?}")));
    }
    let (n, h, w) = (shape[0] as usize, shape[2] as usize, shape[3] as usize);
    if n == 0 {
        return Err(Error::Usage("digit_scenes: no digits to place".into()));
    }
    let pixels: Vec<f32> = Vec::try_from(digits.features.to_kind(Kind::Float).flatten(0, -1))?;
    let labels: Vec<i64> = Vec::try_from(digits.targets.to_kind(Kind::Int64).flatten(0, -1))?;
    if labels.iter().any(|&l| !(0..10).contains(&l)) {
        return Err(Error::Usage("digit_scenes: targets must be digit classes 0–9".into()));
    }
    let mut rng = SplitMix64::new(c.seed ^ 0xd161_75ce);
    let s = c.size;
    let mut canvas = vec![0f32; c.images * s * s];
    let mut all_boxes = Vec::with_capacity(c.images);
    for image in 0..c.images {
        let scene = &mut canvas[image * s * s..(image + 1) * s * s];
        let wanted = rng.range(c.min_objects, c.max_objects);
        let mut boxes: Vec<Detection> = Vec::new();
        let mut attempts = 0;
        while boxes.len() < wanted && attempts < 100 {
            attempts += 1;
            let digit = rng.range(0, n - 1);
            let side = rng.range(c.min_side, c.max_side);
            let (x0, y0) = (rng.range(0, s - side), rng.range(0, s - side));
            let scaled = resize(&pixels[digit * h * w..(digit + 1) * h * w], h, w, side);
            let Some((ix0, iy0, ix1, iy1)) = ink_box(&scaled, side) else { continue };
            let frac = |v: usize| v as f32 / s as f32;
            let candidate = Detection::new(frac(x0 + ix0), frac(y0 + iy0), frac(x0 + ix1), frac(y0 + iy1), labels[digit] as usize, 1.0);
            let cell = |b: &Detection| {
                let g = c.grid_cells as f32;
                (((b.x0 + b.x1) / 2.0 * g) as usize, ((b.y0 + b.y1) / 2.0 * g) as usize)
            };
            let apart = |b: &Detection| b.x1 < candidate.x0 || candidate.x1 < b.x0 || b.y1 < candidate.y0 || candidate.y1 < b.y0;
            if boxes.iter().any(|b| !apart(b) || cell(b) == cell(&candidate)) {
                continue;
            }
            for y in 0..side {
                for x in 0..side {
                    let p = &mut scene[(y0 + y) * s + x0 + x];
                    *p = p.max(scaled[y * side + x]);
                }
            }
            boxes.push(candidate);
        }
        let background = rng.uniform() * 0.3;
        for p in scene.iter_mut() {
            *p = (p.max(background) + rng.normal() * c.noise).clamp(0.0, 1.0);
        }
        all_boxes.push(boxes);
    }
    let images = Tensor::from_slice(&canvas).reshape([c.images as i64, 1, s as i64, s as i64]);
    Ok(Scenes { images, boxes: all_boxes, size: s })
}

/// A `h`×`w` image resampled bilinearly to `side`×`side` (pixel centres aligned).
fn resize(src: &[f32], h: usize, w: usize, side: usize) -> Vec<f32> {
    let mut out = vec![0f32; side * side];
    let (sy, sx) = (h as f32 / side as f32, w as f32 / side as f32);
    for y in 0..side {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..side {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(w - 1);
            let top = src[y0 * w + x0] * (1.0 - tx) + src[y0 * w + x1] * tx;
            let bottom = src[y1 * w + x0] * (1.0 - tx) + src[y1 * w + x1] * tx;
            out[y * side + x] = top * (1.0 - ty) + bottom * ty;
        }
    }
    out
}

/// The box `(x0, y0, x1, y1)` (end exclusive) of a square image's ink, if it has any.
fn ink_box(img: &[f32], side: usize) -> Option<(usize, usize, usize, usize)> {
    let (mut x0, mut y0, mut x1, mut y1) = (side, side, 0, 0);
    for y in 0..side {
        for x in 0..side {
            if img[y * side + x] > INK {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
}
