//! Numeric CSV (`torchbook::data::parse_csv`, what `load_csv_with` reads) from any text.
//!
//! Input: byte 0 is the delimiter, then the target column's name up to the first newline, then
//! the file (invalid UTF-8 replaced).
//!
//! Checks, beyond "never panics" (a libtorch error inside tch would be a panic too): an accepted
//! file gives features `[rows, columns - 1]` (Float) and targets `[rows]` (Int64 class ids or
//! Float), one row per non-blank line after the header; a refusal has a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tch::Kind;
use torchbook::data::parse_csv;

fuzz_target!(|data: &[u8]| {
    let Some((&delimiter, rest)) = data.split_first() else { return };
    let rest = String::from_utf8_lossy(rest);
    let (target, text) = rest.split_once('\n').unwrap_or((&rest, ""));
    let dataset = match parse_csv(text, target, delimiter) {
        Ok(dataset) => dataset,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let columns = lines.next().expect("an accepted file has a header").split(delimiter as char).count() as i64;
    let rows = lines.count() as i64;
    assert_eq!(dataset.features.size(), [rows, columns - 1]);
    assert_eq!(dataset.targets.size(), [rows]);
    assert_eq!(dataset.features.kind(), Kind::Float);
    assert!(matches!(dataset.targets.kind(), Kind::Int64 | Kind::Float), "{:?}", dataset.targets.kind());
});
