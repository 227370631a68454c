//! Image folders: one subfolder per class (`root/cat/*.png`, `root/dog/*.jpg`), every image
//! decoded, converted to RGB and resized, as `[n, 3, height, width]` in [0, 1].

use super::Dataset;
use crate::error::{Error, Result};
use crate::secure::{DataPath, IntoDataPath};
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
/// A file that cannot be decoded is an error that names it. With
/// `secure::encrypted(root, &key)`, every image is sealed (`cat/001.png.age` or
/// `cat/001.png`) and decrypted in memory.
pub fn load_image_folder(root: impl IntoDataPath, height: u32, width: u32) -> Result<ImageFolder> {
    if height == 0 || width == 0 {
        return Err(Error::Usage(format!("images are resized to {height}×{width}: both sides must be at least 1")));
    }
    let root = root.into_data_path();
    let key = root.key.clone();
    let root = root.path.as_path();
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
            .filter(|p| is_image_name(p, key.is_some()))
            .collect();
        images.sort();
        for path in images {
            let bytes = DataPath { path: path.clone(), key: key.clone() }.read()?;
            let rgb = decode_rgb(&bytes, height, width).map_err(|message| Error::parse(&path, None, message))?;
            pixels.extend_from_slice(&rgb);
            labels.push(class as i64);
            files.push(path);
        }
    }
    if labels.is_empty() {
        let sealed = if key.is_some() { " (or those names + .age)" } else { "" };
        return Err(Error::parse(root, None, format!("no images with extensions {EXTENSIONS:?}{sealed} in the class folders")));
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

/// An image file's name: one of [`EXTENSIONS`], or (for sealed folders) such a name + `.age`.
fn is_image_name(path: &Path, sealed: bool) -> bool {
    let has_image_extension = |p: &Path| {
        p.extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
    };
    has_image_extension(path)
        || (sealed && path.extension().is_some_and(|x| x == "age") && has_image_extension(&path.with_extension("")))
}

/// Decodes PNG/JPEG/BMP bytes (format from the content) and resizes to `height`×`width` RGB.
fn decode_rgb(bytes: &[u8], height: u32, width: u32) -> std::result::Result<Vec<u8>, String> {
    let image = image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    Ok(image::imageops::resize(&image.to_rgb8(), width, height, image::imageops::FilterType::Triangle).into_raw())
}

/// One image's bytes as a `[3, height, width]` tensor in [0, 1], as [`load_image_folder`]
/// decodes each file.
pub fn decode_image(bytes: &[u8], height: u32, width: u32) -> std::result::Result<Tensor, String> {
    if height == 0 || width == 0 {
        return Err(format!("cannot resize to {height}×{width}"));
    }
    let rgb = decode_rgb(bytes, height, width)?;
    Ok(Tensor::from_slice(&rgb).reshape([height as i64, width as i64, 3]).permute([2, 0, 1]).to_kind(Kind::Float) / 255.0)
}
