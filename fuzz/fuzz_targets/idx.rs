//! IDX files (`torchbook::data::parse_idx`, what `load_idx` and `load_mnist` read) from any bytes.
//!
//! Checks, beyond "never panics" (a libtorch error inside tch would be a panic too): an accepted
//! file gives a tensor of the header's dimensions and element type whose elements, written back
//! big-endian, are exactly the file's data; a refusal says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tch::{Kind, Tensor};
use torchbook::data::parse_idx;

/// The tensor's elements as big-endian bytes, as IDX stores them.
fn big_endian(t: &Tensor) -> Vec<u8> {
    let flat = t.flatten(0, -1);
    match t.kind() {
        Kind::Uint8 => Vec::<u8>::try_from(&flat).unwrap(),
        Kind::Int8 => Vec::<i8>::try_from(&flat).unwrap().into_iter().map(|v| v as u8).collect(),
        Kind::Int16 => Vec::<i16>::try_from(&flat).unwrap().into_iter().flat_map(i16::to_be_bytes).collect(),
        Kind::Int => Vec::<i32>::try_from(&flat).unwrap().into_iter().flat_map(i32::to_be_bytes).collect(),
        Kind::Float => Vec::<f32>::try_from(&flat).unwrap().into_iter().flat_map(|v| v.to_bits().to_be_bytes()).collect(),
        Kind::Double => Vec::<f64>::try_from(&flat).unwrap().into_iter().flat_map(|v| v.to_bits().to_be_bytes()).collect(),
        other => panic!("unexpected kind {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let tensor = match parse_idx(data) {
        Ok(tensor) => tensor,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    let kind = match data[2] {
        0x08 => Kind::Uint8,
        0x09 => Kind::Int8,
        0x0B => Kind::Int16,
        0x0C => Kind::Int,
        0x0D => Kind::Float,
        0x0E => Kind::Double,
        other => panic!("accepted element type 0x{other:02X}"),
    };
    let rank = data[3] as usize;
    let dims: Vec<i64> =
        (0..rank).map(|i| u32::from_be_bytes(data[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as i64).collect();
    assert_eq!(tensor.size(), dims);
    assert_eq!(tensor.kind(), kind);
    assert_eq!(big_endian(&tensor), &data[4 + 4 * rank..]);
});
