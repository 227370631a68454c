//! IDX files, the format of MNIST and its relatives: a magic number giving the element type
//! and rank, the dimensions, then the data, big-endian.

use super::Dataset;
use crate::error::{Error, Result};
use crate::secure::IntoDataPath;
use tch::{Kind, Tensor};

/// Reads an IDX file (uncompressed `.idx*-ubyte`, or one sealed with
/// `secure::encrypted(path, &key)`) into a tensor of its own shape.
pub fn load_idx(path: impl IntoDataPath) -> Result<Tensor> {
    let file = path.into_data_path();
    let bytes = file.read()?;
    parse_idx(&bytes).map_err(|message| Error::parse(&file.path, None, message))
}

/// An IDX file's bytes as a tensor; the message says what was wrong.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (the first two bytes must be zero)".into());
    }
    let (kind, width) = match bytes[2] {
        0x08 => (Kind::Uint8, 1),
        0x09 => (Kind::Int8, 1),
        0x0B => (Kind::Int16, 2),
        0x0C => (Kind::Int, 4),
        0x0D => (Kind::Float, 4),
        0x0E => (Kind::Double, 8),
        other => return Err(format!("unknown IDX element type 0x{other:02X}")),
    };
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format!("truncated header: expected {header} bytes, found {}", bytes.len()));
    }
    let dims: Vec<i64> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as i64)
        .collect();
    // Dimensions come from the file: a product that overflows cannot match any real file.
    let expected = dims
        .iter()
        .try_fold(width as usize, |total: usize, &d| total.checked_mul(d as usize))
        .ok_or_else(|| format!("dimensions {dims:?} describe more data than can exist"))?;
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(format!(
            "{} data: expected {expected} bytes for dimensions {dims:?}, found {}",
            if data.len() < expected { "truncated" } else { "too much" },
            data.len()
        ));
    }
    // IDX is big-endian; tensors are native (little-endian here): swap multi-byte elements.
    let mut native = data.to_vec();
    if width > 1 {
        for chunk in native.chunks_exact_mut(width) {
            chunk.reverse();
        }
    }
    Ok(Tensor::f_from_data_size(&native, &dims, kind).map_err(|e| e.to_string())?)
}

/// MNIST-style images and labels: images `[n, 1, rows, cols]` scaled to [0, 1], labels `Int64`.
pub fn load_mnist(images: impl IntoDataPath, labels: impl IntoDataPath) -> Result<Dataset> {
    let images = images.into_data_path();
    let x = load_idx(&images)?;
    let y = load_idx(labels)?;
    if x.dim() != 3 {
        return Err(Error::shape(format!("{} (images)", images.path.display()), "[n, rows, cols]", &x.size()));
    }
    let x = x.to_kind(Kind::Float).unsqueeze(1) / 255.0;
    Dataset::new(x, y.to_kind(Kind::Int64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, kind, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn reads_bytes_and_big_endian_ints() {
        let t = parse_idx(&idx(0x08, &[2, 2], &[1, 2, 3, 4])).unwrap();
        assert_eq!(t.size(), [2, 2]);
        assert_eq!(t.int64_value(&[1, 0]), 3);
        let t = parse_idx(&idx(0x0C, &[1], &258i32.to_be_bytes())).unwrap();
        assert_eq!(t.int64_value(&[0]), 258);
    }

    #[test]
    fn broken_files_say_what() {
        assert!(parse_idx(b"PK\x03\x04").unwrap_err().contains("not an IDX"));
        let err = parse_idx(&idx(0x08, &[2, 2], &[1, 2, 3])).unwrap_err();
        assert!(err.contains("truncated data: expected 4 bytes"), "{err}");
        assert!(parse_idx(&idx(0x07, &[1], &[0])).unwrap_err().contains("0x07"));
        // Dimensions whose product overflows are refused, not multiplied.
        let err = parse_idx(&idx(0x0E, &[u32::MAX, u32::MAX, u32::MAX], &[])).unwrap_err();
        assert!(err.contains("more data than can exist"), "{err}");
        assert!(parse_idx(&[0, 0, 8, 3, 0]).unwrap_err().contains("truncated header"));
    }
}
