//! Data: the in-memory [`Dataset`], loaders for common file formats (numeric CSV, image
//! folders, IDX/MNIST, labelled text), normalisation and augmentation transforms.

mod csv;
mod dataset;
mod idx;
mod image_folder;
mod text;
mod transforms;

pub use csv::{load_csv, load_csv_with};
pub use dataset::{Batches, Dataset, Transform};
pub use idx::{load_idx, load_mnist};
pub use image_folder::{load_image_folder, ImageFolder};
pub use text::{load_text_folder, load_text_lines, TextDataset};
pub use transforms::{Cutout, GaussianNoise, Normalizer, RandomCrop, RandomFlip, RandomRotation};
