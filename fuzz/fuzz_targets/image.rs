//! Images (`torchbook::data::decode_image`, what `load_image_folder` does to each file): PNG
//! and JPEG from any bytes, resized.
//!
//! Input: bytes 0 and 1 give the height and width (1 + b % 32 each), the rest is the file.
//! Files that declare more than 256 × 256 pixels are skipped: they go through the same code,
//! only slower (a 526-byte JPEG declaring 32764 × 253 pixels takes 0.8 s here), and would cut the fuzzer's
//! throughput by a hundred.
//!
//! Checks, beyond "never panics" (a libtorch error inside tch would be a panic too; an image
//! whose header claims more memory than the fuzzer's 2 GB limit fails the run): an accepted
//! image is a Float tensor `[3, height, width]` with every value in [0, 1]; a refusal says why.
#![no_main]

use image::ImageReader;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use tch::Kind;
use torchbook::data::decode_image;

fuzz_target!(|data: &[u8]| {
    let [h, w, file @ ..] = data else { return };
    let (height, width) = (1 + u32::from(*h) % 32, 1 + u32::from(*w) % 32);
    let declared = ImageReader::new(Cursor::new(file)).with_guessed_format().ok().and_then(|r| r.into_dimensions().ok());
    if declared.is_some_and(|(w, h)| u64::from(w) * u64::from(h) > 256 * 256) {
        return;
    }
    match decode_image(file, height, width) {
        Ok(t) => {
            assert_eq!(t.size(), [3, height as i64, width as i64]);
            assert_eq!(t.kind(), Kind::Float);
            let (min, max) = (t.min().double_value(&[]), t.max().double_value(&[]));
            assert!((0.0..=1.0).contains(&min) && (0.0..=1.0).contains(&max), "values in [{min}, {max}]");
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
