//! The engine pipe (`wire::engine`): every line read as a `ToEngine` request (the engine's
//! stdin) and as a `FromEngine` event (the kernel's side), as both processes parse them
//! (`serde_json::from_str` of one line).
//!
//! Checks, beyond "never panics": a line that parses is written back by `write_line` as exactly
//! one line, which parses again to the same message (compared as JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use torchbook_kernel::wire::engine::{write_line, FromEngine, ToEngine};

fn round_trip<T: Serialize + DeserializeOwned>(line: &str) {
    let Ok(message) = serde_json::from_str::<T>(line) else { return };
    let mut out = Vec::new();
    write_line(&mut out, &message).expect("writing to a Vec cannot fail");
    let written = String::from_utf8(out).expect("JSON is UTF-8");
    let body = written.strip_suffix('\n').expect("a line ends with a newline");
    assert!(!body.contains('\n'), "a message spans lines: {written:?}");
    let again: T = serde_json::from_str(body).expect("a written line parses");
    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        serde_json::to_value(&again).unwrap(),
        "{line:?} → {body:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        round_trip::<ToEngine>(line);
        round_trip::<FromEngine>(line);
    }
});
