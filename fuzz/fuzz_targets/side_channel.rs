//! Side-channel records (`wire::side_channel`): `parse` on every line, as the engine reads the
//! worker's stdout, and `mime_value` on a MIME type and text.
//!
//! Checks, beyond "never panics": a line without the record prefix is never a record; a record
//! written back (prefix + JSON) is one line and parses to the same record; `mime_value` keeps
//! text of a non-JSON MIME type as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use torchbook_kernel::wire::side_channel::{mime_value, parse, RECORD_PREFIX};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let Some(record) = parse(line) else { continue };
        assert!(line.starts_with(RECORD_PREFIX));
        let written = format!("{RECORD_PREFIX}{}", serde_json::to_string(&record).unwrap());
        assert!(!written.contains('\n'), "a record spans lines: {written:?}");
        assert_eq!(parse(&written).as_ref(), Some(&record), "{line:?} → {written:?}");
    }
    if let Some((mime, body)) = text.split_once('\n') {
        let value = mime_value(mime, body.to_owned());
        if !(mime == "application/json" || mime.ends_with("+json")) {
            assert_eq!(value, Value::String(body.to_owned()));
        }
    }
});
