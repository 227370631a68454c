//! Normalisation and augmentation. Augmentations act on image batches `[batch, channels,
//! height, width]` with fresh randomness per sample (libtorch's generator: seed it with
//! `manual_seed`), and are applied by `fit` to training batches only.

use super::Transform;
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

fn expect_images(xs: &Tensor, what: &str) -> Result<(i64, i64, i64, i64)> {
    match xs.size().as_slice() {
        &[n, c, h, w] => Ok((n, c, h, w)),
        other => Err(Error::shape(format!("{what} input"), "[batch, channels, height, width]", other)),
    }
}

/// Standardises features: per column for `[n, features]`, per channel for `[n, channels, …]`.
#[derive(Debug)]
pub struct Normalizer {
    pub mean: Tensor,
    pub std: Tensor,
}

impl Normalizer {
    /// Learns mean and standard deviation from (training) features.
    pub fn fit(features: &Tensor) -> Result<Self> {
        let features = features.to_kind(Kind::Float);
        let dims: Vec<i64> = match features.dim() {
            0 | 1 => return Err(Error::shape("Normalizer::fit", "[n, features] or [n, channels, …]", &features.size())),
            2 => vec![0],
            rank => std::iter::once(0).chain(2..rank as i64).collect(),
        };
        let mean = features.f_mean_dim(dims.as_slice(), true, Kind::Float)?;
        let std = features.f_std_dim(dims.as_slice(), false, true)?.f_clamp_min(1e-8)?;
        Ok(Normalizer { mean, std })
    }

    /// `(x - mean) / std`.
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        let expected = &self.mean.size()[1..];
        if xs.dim() != self.mean.dim() || xs.size()[1] != expected[0] {
            return Err(Error::shape("Normalizer input", format!("[n, {}, …] like the data it was fitted on", expected[0]), &xs.size()));
        }
        Ok(xs.to_kind(Kind::Float).f_sub(&self.mean.to_device(xs.device()))?.f_div(&self.std.to_device(xs.device()))?)
    }
}

impl Transform for Normalizer {
    fn name(&self) -> String {
        "Normalizer".into()
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((Normalizer::apply(self, xs)?, ys.shallow_clone()))
    }
}

/// Mirrors each image left–right with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct RandomFlip {
    pub p: f64,
}

impl Default for RandomFlip {
    fn default() -> Self {
        RandomFlip { p: 0.5 }
    }
}

impl Transform for RandomFlip {
    fn name(&self) -> String {
        format!("RandomFlip(p={})", self.p)
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, _, _, _) = expect_images(xs, "RandomFlip")?;
        let flip = Tensor::f_rand([n, 1, 1, 1], (Kind::Float, xs.device()))?.f_lt(self.p)?;
        Ok((xs.f_flip([3])?.f_where_self(&flip, xs)?, ys.shallow_clone()))
    }
}

/// Pads each side by `padding` zeros, then crops back to the original size at a random offset.
#[derive(Debug, Clone, Copy)]
pub struct RandomCrop {
    pub padding: i64,
}

impl Transform for RandomCrop {
    fn name(&self) -> String {
        format!("RandomCrop(padding={})", self.padding)
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, _, h, w) = expect_images(xs, "RandomCrop")?;
        let p = self.padding;
        if p == 0 {
            return Ok((xs.shallow_clone(), ys.shallow_clone()));
        }
        let padded = xs.f_constant_pad_nd([p, p, p, p])?;
        let offsets = Tensor::f_randint_low(0, 2 * p + 1, [n, 2], (Kind::Int64, tch::Device::Cpu))?;
        let offsets: Vec<i64> = Vec::<i64>::try_from(offsets.flatten(0, -1))?;
        let crops: Vec<Tensor> = (0..n as usize)
            .map(|i| padded.get(i as i64).narrow(1, offsets[2 * i], h).narrow(2, offsets[2 * i + 1], w))
            .collect();
        Ok((Tensor::f_stack(&crops, 0)?, ys.shallow_clone()))
    }
}

/// Rotates each image by a random angle in `[-degrees, degrees]` (bilinear, zero fill).
#[derive(Debug, Clone, Copy)]
pub struct RandomRotation {
    pub degrees: f64,
}

impl Transform for RandomRotation {
    fn name(&self) -> String {
        format!("RandomRotation({}°)", self.degrees)
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, c, h, w) = expect_images(xs, "RandomRotation")?;
        let device = xs.device();
        let angles = (Tensor::f_rand([n], (Kind::Float, device))? * 2.0 - 1.0) * self.degrees.to_radians();
        let (cos, sin) = (angles.cos(), angles.sin());
        let zeros = angles.zeros_like();
        let theta = Tensor::f_stack(&[&cos, &(-&sin), &zeros, &sin, &cos, &zeros], 1)?.f_reshape([n, 2, 3])?;
        let grid = Tensor::f_affine_grid_generator(&theta, [n, c, h, w], false)?;
        let input = xs.to_kind(Kind::Float);
        Ok((input.f_grid_sampler(&grid, 0, 0, false)?, ys.shallow_clone()))
    }
}

/// Adds gaussian noise with standard deviation `std` (any feature shape).
#[derive(Debug, Clone, Copy)]
pub struct GaussianNoise {
    pub std: f64,
}

impl Transform for GaussianNoise {
    fn name(&self) -> String {
        format!("GaussianNoise({})", self.std)
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((xs.f_add(&(xs.f_randn_like()? * self.std))?, ys.shallow_clone()))
    }
}

/// Zeroes a `size`×`size` square at a random place in each image (DeVries & Taylor, 2017).
#[derive(Debug, Clone, Copy)]
pub struct Cutout {
    pub size: i64,
}

impl Transform for Cutout {
    fn name(&self) -> String {
        format!("Cutout({})", self.size)
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, _, h, w) = expect_images(xs, "Cutout")?;
        let device = xs.device();
        let cy = Tensor::f_randint_low(0, h, [n, 1, 1], (Kind::Int64, device))?;
        let cx = Tensor::f_randint_low(0, w, [n, 1, 1], (Kind::Int64, device))?;
        let rows = Tensor::f_arange(h, (Kind::Int64, device))?.f_view([1, h, 1])?;
        let cols = Tensor::f_arange(w, (Kind::Int64, device))?.f_view([1, 1, w])?;
        let half = self.size / 2;
        let inside_rows = rows.f_sub(&cy)?.f_abs()?.f_le(half)?;
        let inside_cols = cols.f_sub(&cx)?.f_abs()?.f_le(half)?;
        let keep = inside_rows.f_logical_and(&inside_cols)?.f_logical_not()?.f_unsqueeze(1)?;
        Ok((xs.f_mul(&keep.to_kind(xs.kind()))?, ys.shallow_clone()))
    }
}
