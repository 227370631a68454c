//! In-memory datasets: a features tensor and a targets tensor with the same first dimension,
//! seeded shuffles and splits, batching, and per-batch transforms (augmentation).

use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::secure::IntoDataPath;
use std::rc::Rc;
use tch::{Device, Tensor};

/// A transform applied to each training batch (features, targets) → (features, targets).
pub trait Transform {
    fn name(&self) -> String;
    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)>;
}

/// A closure as a transform: `dataset.map(|x, y| (x * 2.0, y.shallow_clone()))`.
struct MapFn<F>(F);

impl<F: Fn(&Tensor, &Tensor) -> (Tensor, Tensor)> Transform for MapFn<F> {
    fn name(&self) -> String {
        "map".into()
    }

    fn apply(&self, xs: &Tensor, ys: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.0)(xs, ys))
    }
}

/// Features and targets in memory (on any device). Cloning shares the tensors.
pub struct Dataset {
    pub features: Tensor,
    pub targets: Tensor,
    transforms: Vec<Rc<dyn Transform>>,
}

impl Clone for Dataset {
    fn clone(&self) -> Self {
        Dataset {
            features: self.features.shallow_clone(),
            targets: self.targets.shallow_clone(),
            transforms: self.transforms.clone(),
        }
    }
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.transforms.iter().map(|t| t.name()).collect();
        write!(
            f,
            "Dataset {{ samples: {}, features: {:?} {:?}, targets: {:?} {:?}, transforms: {names:?} }}",
            self.len(),
            self.features.size(),
            self.features.kind(),
            self.targets.size(),
            self.targets.kind()
        )
    }
}

impl Dataset {
    /// Saves features and targets as one safetensors file (tensors `features` and `targets`,
    /// readable by PyTorch's safetensors), replaced whole; sealed when given
    /// `secure::encrypted(path, &key)`. Transforms are code and are not saved.
    pub fn save(&self, path: impl IntoDataPath) -> Result<()> {
        let named = [
            ("features".to_owned(), self.features.shallow_clone()),
            ("targets".to_owned(), self.targets.shallow_clone()),
        ];
        crate::checkpoint::write(&path.into_data_path(), &named)
    }

    /// Loads a dataset written by [`Dataset::save`] (on the CPU).
    pub fn load(path: impl IntoDataPath) -> Result<Dataset> {
        let file = path.into_data_path();
        let mut named = crate::checkpoint::read(&file)?;
        let mut take = |name: &str| {
            named.remove(name).ok_or_else(|| {
                Error::parse(&file.path, None, format!("not a saved Dataset: no tensor {name:?} (expected \"features\" and \"targets\")"))
            })
        };
        let features = take("features")?;
        let targets = take("targets")?;
        Dataset::new(features, targets)
    }

    /// Pairs features `[n, …]` with targets `[n, …]`.
    pub fn new(features: Tensor, targets: Tensor) -> Result<Self> {
        let (f, t) = (features.size(), targets.size());
        if f.is_empty() || t.is_empty() || f[0] != t[0] {
            return Err(Error::shape(
                "Dataset targets",
                format!("[{}, …] (one target per sample)", f.first().copied().unwrap_or(0)),
                &t,
            ));
        }
        Ok(Dataset { features, targets, transforms: Vec::new() })
    }

    pub fn len(&self) -> i64 {
        self.features.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a per-batch transform, applied by [`Dataset::batches`] when `augment` is on.
    pub fn with_transform(mut self, transform: impl Transform + 'static) -> Self {
        self.transforms.push(Rc::new(transform));
        self
    }

    /// Adds a closure as a per-batch transform.
    pub fn map(self, f: impl Fn(&Tensor, &Tensor) -> (Tensor, Tensor) + 'static) -> Self {
        self.with_transform(MapFn(f))
    }

    /// The same data without transforms (e.g. for evaluation).
    pub fn without_transforms(&self) -> Self {
        Dataset { transforms: Vec::new(), ..self.clone() }
    }

    pub fn to_device(&self, device: Device) -> Self {
        Dataset {
            features: self.features.to_device(device),
            targets: self.targets.to_device(device),
            transforms: self.transforms.clone(),
        }
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[i64]) -> Result<Self> {
        let idx = Tensor::from_slice(indices).to_device(self.features.device());
        Ok(Dataset {
            features: self.features.f_index_select(0, &idx)?,
            targets: self.targets.f_index_select(0, &idx.to_device(self.targets.device()))?,
            transforms: self.transforms.clone(),
        })
    }

    /// A seeded shuffle of the samples.
    pub fn shuffled(&self, seed: u64) -> Result<Self> {
        self.select(&SplitMix64::new(seed).permutation(self.len() as usize))
    }

    /// Splits off `fraction` of the samples (after a seeded shuffle): `(rest, split)`, as Keras's
    /// `validation_split` does for `(train, validation)`.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&fraction) || fraction == 0.0 {
            return Err(Error::Usage(format!("split fraction must be in (0, 1), got {fraction}")));
        }
        let n = self.len() as usize;
        let order = SplitMix64::new(seed).permutation(n);
        let take = ((n as f64) * fraction).round().clamp(1.0, (n - 1).max(1) as f64) as usize;
        let (split, rest) = order.split_at(take);
        Ok((self.select(rest)?, self.select(split)?))
    }

    /// Iterates over batches; with `shuffle`, in a seeded random order; with `augment`, applying
    /// the transforms to each batch.
    pub fn batches(&self, batch_size: i64, shuffle: Option<u64>, augment: bool) -> Result<Batches<'_>> {
        if batch_size <= 0 {
            return Err(Error::Usage(format!("batch_size must be positive, got {batch_size}")));
        }
        let order = shuffle.map(|seed| {
            let perm = SplitMix64::new(seed).permutation(self.len() as usize);
            Tensor::from_slice(&perm).to_device(self.features.device())
        });
        Ok(Batches { data: self, order, batch_size, next: 0, augment, len: None })
    }

    /// This rank's share of an epoch, as torch's DistributedSampler deals it: the (shuffled)
    /// order padded by repeating its start to a multiple of `world`, then every `world`-th
    /// sample from `rank` — equal counts on every rank, disjoint but for the padding.
    pub fn shard_batches(&self, batch_size: i64, shuffle: Option<u64>, augment: bool, rank: usize, world: usize) -> Result<Batches<'_>> {
        if batch_size <= 0 {
            return Err(Error::Usage(format!("batch_size must be positive, got {batch_size}")));
        }
        if world == 0 || rank >= world {
            return Err(Error::Usage(format!("rank {rank} of a world of {world}")));
        }
        let order = shard_order(self.len() as usize, shuffle, rank, world);
        let len = order.len() as i64;
        let order = Tensor::from_slice(&order).to_device(self.features.device());
        Ok(Batches { data: self, order: Some(order), batch_size, next: 0, augment, len: Some(len) })
    }
}

/// The sample ids rank `rank` of `world` takes from `n` samples in one epoch (see
/// [`Dataset::shard_batches`]).
pub fn shard_order(n: usize, shuffle: Option<u64>, rank: usize, world: usize) -> Vec<i64> {
    let order: Vec<i64> = match shuffle {
        Some(seed) => SplitMix64::new(seed).permutation(n),
        None => (0..n as i64).collect(),
    };
    if order.is_empty() {
        return order;
    }
    let total = n.div_ceil(world) * world;
    (0..total).skip(rank).step_by(world).map(|i| order[i % n]).collect()
}

/// Iterator over `(features, targets)` batches.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Option<Tensor>,
    batch_size: i64,
    next: i64,
    augment: bool,
    /// The number of samples to deal when it is not the data set's (a shard).
    len: Option<i64>,
}

impl Batches<'_> {
    pub fn count(&self) -> usize {
        ((self.len.unwrap_or(self.data.len()) + self.batch_size - 1) / self.batch_size) as usize
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.len.unwrap_or(self.data.len());
        if self.next >= n {
            return None;
        }
        let size = self.batch_size.min(n - self.next);
        let start = self.next;
        self.next += size;
        let batch = (|| -> Result<(Tensor, Tensor)> {
            let (mut x, mut y) = match &self.order {
                Some(order) => {
                    let idx = order.f_narrow(0, start, size)?;
                    (self.data.features.f_index_select(0, &idx)?, self.data.targets.f_index_select(0, &idx)?)
                }
                None => (self.data.features.f_narrow(0, start, size)?, self.data.targets.f_narrow(0, start, size)?),
            };
            if self.augment {
                for t in &self.data.transforms {
                    (x, y) = t.apply(&x, &y)?;
                }
            }
            Ok((x, y))
        })();
        Some(batch)
    }
}
