//! Data: the in-memory [`Dataset`], loaders for common file formats, normalisation and
//! augmentation transforms.

mod dataset;

pub use dataset::{Batches, Dataset, Transform};
