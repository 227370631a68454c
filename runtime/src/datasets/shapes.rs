//! A generated object-detection data set: RGB images with a few rectangles, circles and
//! triangles of random size and colour on a noisy background, with their boxes and classes.
//! Seeded, so the same config gives the same images. Shapes overlap little (their boxes' IoU is
//! below 0.2) and no two centres share a cell of an 8×8 grid, so a grid detector can find each.

use super::scenes::Scenes;
use crate::detection::Detection;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use tch::Tensor;

/// Generated shapes: images `[n, 3, size, size]` and their boxes.
pub type Shapes = Scenes;

/// Class names, in class-id order.
pub const SHAPE_CLASSES: [&str; 3] = ["rectangle", "circle", "triangle"];

#[derive(Debug, Clone, PartialEq)]
pub struct ShapesConfig {
    pub images: usize,
    /// Side of the square images, in pixels.
    pub size: usize,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Smallest and largest shape side, in pixels.
    pub min_side: usize,
    pub max_side: usize,
    /// Standard deviation of the Gaussian pixel noise (pixel values are in [0, 1]).
    pub noise: f32,
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig {
            images: 1000,
            size: 64,
            min_objects: 1,
            max_objects: 3,
            min_side: 12,
            max_side: 28,
            noise: 0.08,
            seed: 0,
        }
    }
}

/// Generates the data set described by `config`.
pub fn shapes(config: &ShapesConfig) -> Result<Shapes> {
    let c = config;
    if c.size < 16 || c.min_side < 4 || c.max_side < c.min_side || c.max_side > c.size || c.max_objects < c.min_objects {
        return Err(Error::Usage(format!("shapes: inconsistent config {c:?}")));
    }
    let mut rng = SplitMix64::new(c.seed ^ 0x5ea_5eed);
    let s = c.size;
    let mut pixels = vec![0f32; c.images * 3 * s * s];
    let mut all_boxes = Vec::with_capacity(c.images);
    for image in 0..c.images {
        let plane = |channel: usize| (image * 3 + channel) * s * s;
        let background = [rng.uniform() * 0.3, rng.uniform() * 0.3, rng.uniform() * 0.3];
        let wanted = rng.range(c.min_objects, c.max_objects);
        let mut boxes: Vec<Detection> = Vec::new();
        let mut attempts = 0;
        while boxes.len() < wanted && attempts < 100 {
            attempts += 1;
            let side = rng.range(c.min_side, c.max_side);
            let (w, h) = match rng.range(0, 2) {
                1 => (side, side),
                _ => (side, rng.range(c.min_side, c.max_side)),
            };
            let (x0, y0) = (rng.range(0, s - w), rng.range(0, s - h));
            let class = rng.range(0, SHAPE_CLASSES.len() - 1);
            let (w, h) = if class == 1 { (w.min(h), w.min(h)) } else { (w, h) };
            let candidate = Detection::new(
                x0 as f32 / s as f32,
                y0 as f32 / s as f32,
                (x0 + w) as f32 / s as f32,
                (y0 + h) as f32 / s as f32,
                class,
                1.0,
            );
            let cell = |b: &Detection| {
                let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
                ((cx * 8.0) as usize, (cy * 8.0) as usize)
            };
            let clash = boxes
                .iter()
                .any(|b| crate::detection::iou(b, &candidate) > 0.2 || cell(b) == cell(&candidate));
            if clash {
                continue;
            }
            let colour = loop {
                let colour = [rng.uniform(), rng.uniform(), rng.uniform()];
                if colour.iter().zip(&background).map(|(a, b)| (a - b).abs()).sum::<f32>() > 0.9 {
                    break colour;
                }
            };
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    let (u, v) = ((x - x0) as f32 + 0.5, (y - y0) as f32 + 0.5);
                    let inside = match class {
                        0 => true,
                        1 => {
                            let r = w as f32 / 2.0;
                            (u - r).powi(2) + (v - r).powi(2) <= r * r
                        }
                        _ => {
                            // Apex at the top centre, base along the bottom.
                            let half = w as f32 / 2.0 * (v / h as f32);
                            (u - w as f32 / 2.0).abs() <= half
                        }
                    };
                    if inside {
                        for (channel, value) in colour.iter().enumerate() {
                            pixels[plane(channel) + y * s + x] = *value;
                        }
                    }
                }
            }
            boxes.push(candidate);
        }
        for channel in 0..3 {
            for i in 0..s * s {
                let p = &mut pixels[plane(channel) + i];
                let base = if *p == 0.0 { background[channel] } else { *p };
                *p = (base + rng.normal() * c.noise).clamp(0.0, 1.0);
            }
        }
        all_boxes.push(boxes);
    }
    let images = Tensor::from_slice(&pixels).reshape([c.images as i64, 3, s as i64, s as i64]);
    Ok(Scenes { images, boxes: all_boxes, size: s })
}
