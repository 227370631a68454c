//! The 8×8 handwritten digits (1,797 images, 10 classes) that scikit-learn ships, from the UCI
//! "Optical Recognition of Handwritten Digits" data set (CC BY 4.0). `make data` exports it
//! from the scikit-learn wheel as `digits.csv` (64 pixel columns with values 0–16, then `label`).

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
