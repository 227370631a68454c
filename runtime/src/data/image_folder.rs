//! Image folders: one subfolder per class (`root/cat/*.png`, `root/dog/*.jpg`), every image
//! decoded, converted to RGB and resized, as `[n, 3, height, width]` in [0, 1].

use super::Dataset;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A loaded image folder: the data and the class names (index = class id).
#[derive(Debug)]
pub struct ImageFolder {
    pub dataset: Dataset,
    pub classes: Vec<String>,
    pub files: Vec<PathBuf>,
}

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// Loads every image under `root/<class>/`; classes are the subfolder names in sorted order.
/// A file that cannot be decoded is an error that names it.
pub fn load_image_folder(root: impl AsRef<Path>, height: u32, width: u32) -> Result<ImageFolder> {
    let root = root.as_ref();
    let mut classes: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(Error::parse(root, None, "no class subfolders (expected root/<class>/<image files>)"));
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut files = Vec::new();
    for (class, (_, dir)) in classes.iter().enumerate() {
        let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            })
            .collect();
        images.sort();
        for path in images {
            let image = image::open(&path).map_err(|e| Error::parse(&path, None, format!("cannot decode image: {e}")))?;
            let rgb = image::imageops::resize(&image.to_rgb8(), width, height, image::imageops::FilterType::Triangle);
            pixels.extend_from_slice(rgb.as_raw());
            labels.push(class as i64);
            files.push(path);
        }
    }
    if labels.is_empty() {
        return Err(Error::parse(root, None, format!("no images with extensions {EXTENSIONS:?} in the class folders")));
    }
    let n = labels.len() as i64;
    let x = Tensor::from_slice(&pixels)
        .reshape([n, height as i64, width as i64, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    Ok(ImageFolder {
        dataset: Dataset::new(x, Tensor::from_slice(&labels))?,
        classes: classes.into_iter().map(|(name, _)| name).collect(),
        files,
    })
}
