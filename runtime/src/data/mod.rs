//! Data: the in-memory [`Dataset`], loaders for common file formats (numeric CSV, Parquet and
//! Arrow IPC/Feather, image folders, IDX/MNIST, labelled text; each also sealed with
//! `secure::encrypted`), normalisation and augmentation transforms.

mod columnar;
mod csv;
mod dataset;
mod idx;
mod image_folder;
mod text;
mod transforms;

pub use columnar::{load_feather, load_feather_with, load_parquet, load_parquet_with, read_feather, read_parquet, Columns};
pub use csv::{load_csv, load_csv_with, parse_csv};
pub use dataset::{shard_order, Batches, Dataset, Transform};
pub use idx::{load_idx, load_mnist, parse_idx};
pub use image_folder::{decode_image, load_image_folder, ImageFolder};
pub use text::{load_text_folder, load_text_lines, TextDataset};
pub use transforms::{Cutout, GaussianNoise, Normalizer, RandomCrop, RandomFlip, RandomRotation};
