//! `?` errors (`wire::question_mark`): the marker lines the worker's relay turns into
//! `user_error` records (`record_from_marker`), the rewrite of evcxr's generated source
//! (`annotate_cell_source`), and the type-name and error formatting the kernel applies to them
//! (`readable_type_name`, `CellError::returned`).
//!
//! Checks, beyond "never panics": any line that `record_from_marker` accepts gives a record that
//! `side_channel::parse` reads as a `user_error`; a marker built from any type name and message
//! (split at the first NUL of the input) gives them back exactly; the rewrite keeps the number of
//! lines (compile errors keep their positions); a returned error has a non-empty traceback.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchbook_kernel::wire::cell_error::CellError;
use torchbook_kernel::wire::question_mark::{annotate_cell_source, readable_type_name, record_from_marker, MARKER};
use torchbook_kernel::wire::side_channel::{parse, Record};

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Some(record) = record_from_marker(line) {
            assert!(matches!(parse(&record), Some(Record::UserError { .. })), "{line:?} → {record:?}");
        }
    }

    let (type_name, message) = text.split_once('\0').unwrap_or((&text, ""));
    let line = format!("{MARKER}{} {}", hex(type_name), hex(message));
    let record = record_from_marker(&line).expect("a well-formed marker line is read");
    match parse(&record) {
        Some(Record::UserError { type_name: t, message: m }) => {
            assert_eq!((t.as_str(), m.as_str()), (type_name, message));
        }
        other => panic!("{other:?}"),
    }
    let error = CellError::returned(type_name, message);
    assert!(!error.traceback.is_empty() && !error.ename.is_empty());
    let _ = readable_type_name(type_name);

    if let Some(rewritten) = annotate_cell_source(&text) {
        assert_eq!(rewritten.matches('\n').count(), text.matches('\n').count());
    }
});
