//! How an error that a cell passes on with `?` reaches the kernel as an error, with its type.
//!
//! evcxr runs a cell that uses `?` inside a closure returning `Result<(), EvcxrUserCodeError>`,
//! and converts every error with a generated `impl<T: Display> From<T> for EvcxrUserCodeError`
//! whose `from` prints the message on stderr and `EVCXR_ERROR_OCCURRED` on stdout; evcxr then
//! forgets the cell's new variables and reports success. Nothing in between knows the type.
//!
//! - The cargo stand-in (`cell_build`) rewrites that one generated line before the cell crate
//!   is compiled ([`annotate_cell_source`]): the message and `std::any::type_name::<T>()` go
//!   out as one [`MARKER`] line on stdout instead, on the same source line, so compile errors
//!   keep their positions.
//! - The worker's stdout relay turns the marker line into a `user_error` side-channel record
//!   ([`record_from_marker`]); when evcxr's `EVCXR_ERROR_OCCURRED` comes without one (a cell
//!   built by plain cargo, `TORCHBOOK_CELL_CARGO=1`), it sends a record without a type.
//! - The execute handler turns the record into the cell's error (`CellError::returned`).

use serde_json::json;

/// Starts the line the rewritten `from` prints: hex of the type name, a space, hex of the message.
pub const MARKER: &str = "\u{1e}torchbook-user-error ";
/// What evcxr's generated `from` prints on stdout after the message.
pub const EVCXR_ERROR_OCCURRED: &str = "EVCXR_ERROR_OCCURRED";

/// The `eprintln!` of evcxr 0.22's generated `from`, in each of its error formats (`:fmt`).
const EVCXR_PRINTS: [&str; 3] = [
    "eprintln!(\"{}\", error);",
    "eprintln!(\"{:?}\", error);",
    "eprintln!(\"{:#?}\", error);",
];
const EVCXR_NEXT_LINE: &str = "println!(\"{}\", evcxr_internal_runtime::USER_ERROR_OCCURRED);";

/// Rewrites evcxr's error conversion in a cell crate's source; `None` when there is none (a
/// cell without `?`) or it is not the code this was written for.
pub fn annotate_cell_source(source: &str) -> Option<String> {
    let mut lines: Vec<&str> = source.split('\n').collect();
    let mut replaced = Vec::new();
    for i in 0..lines.len().saturating_sub(1) {
        let line = lines[i].trim();
        if lines[i + 1].trim() != EVCXR_NEXT_LINE {
            continue;
        }
        if let Some(print) = EVCXR_PRINTS.iter().find(|p| **p == line) {
            let format = &print["eprintln!(".len()..print.len() - ", error);".len()];
            replaced.push((i, rewritten_print(format)));
        }
    }
    if replaced.is_empty() {
        return None;
    }
    let owned: Vec<(usize, String)> = replaced;
    for (i, text) in &owned {
        lines[*i] = text.as_str();
    }
    Some(lines.join("\n"))
}

/// One line of Rust, inside `fn from(error: T)`, printing [`MARKER`], the type and the message
/// (formatted as evcxr would have) as hex, so no escaping can go wrong.
fn rewritten_print(format: &str) -> String {
    format!(
        "{{ fn torchbook_hex(text: &str) -> String {{ text.bytes().map(|b| format!(\"{{:02x}}\", b)).collect() }} \
         println!(\"{marker}{{}} {{}}\", torchbook_hex(::std::any::type_name::<T>()), torchbook_hex(&format!({format}, error))); }}",
        marker = MARKER.escape_default(),
    )
}

/// The side-channel record for a marker line, or `None` when `line` is not one.
pub fn record_from_marker(line: &str) -> Option<String> {
    let rest = line.strip_prefix(MARKER)?;
    let (type_hex, message_hex) = rest.split_once(' ')?;
    let type_name = String::from_utf8_lossy(&unhex(type_hex)?).into_owned();
    let message = String::from_utf8_lossy(&unhex(message_hex)?).into_owned();
    Some(record(&type_name, &message))
}

/// The record for an error whose type and message are not known (the message went to stderr).
pub fn untyped_record() -> String {
    record("", "")
}

fn record(type_name: &str, message: &str) -> String {
    let record = json!({"type": "user_error", "type_name": type_name, "message": message});
    format!("{}{record}", crate::wire::side_channel::RECORD_PREFIX)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// A name for the error's type as a user would write it: module paths that only repeat the
/// type's name are dropped (`std::io::error::Error` → `std::io::Error`), and the standard
/// library's prelude types lose their path (`alloc::string::String` → `String`).
pub fn readable_type_name(type_name: &str) -> String {
    let mut name = type_name.to_owned();
    for (from, to) in [("alloc::string::String", "String"), ("alloc::boxed::Box", "Box"), ("alloc::vec::Vec", "Vec")] {
        name = name.replace(from, to);
    }
    for private in ["::error::", "::errors::"] {
        name = name.replace(private, "::");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What evcxr 0.22 generates for a cell that uses `?` (`error_trait_code`).
    const EVCXR_CELL: &str = "\n            struct EvcxrUserCodeError {}\n            impl<T: std::fmt::Display> From<T> for EvcxrUserCodeError {\n                fn from(error: T) -> Self {\n                    eprintln!(\"{}\", error);\n                    println!(\"{}\", evcxr_internal_runtime::USER_ERROR_OCCURRED);\n                    EvcxrUserCodeError {}\n                }\n            }\n        \nfn run() {}";

    #[test]
    fn evcxrs_conversion_is_rewritten_on_the_same_line() {
        let rewritten = annotate_cell_source(EVCXR_CELL).expect("the conversion is found");
        assert_eq!(rewritten.lines().count(), EVCXR_CELL.lines().count());
        let line = rewritten.lines().nth(4).unwrap();
        assert!(line.contains("type_name::<T>()") && line.contains("format!(\"{}\", error)"), "{line}");
        assert!(!rewritten.contains("eprintln!"), "{rewritten}");
        assert!(annotate_cell_source("fn run() {}").is_none());
        let debug = EVCXR_CELL.replace("std::fmt::Display", "std::fmt::Debug").replace("eprintln!(\"{}\"", "eprintln!(\"{:?}\"");
        assert!(annotate_cell_source(&debug).unwrap().contains("format!(\"{:?}\", error)"));
    }

    #[test]
    fn marker_lines_become_records() {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let line = format!("{MARKER}{} {}", hex("std::io::error::Error"), hex("no such file: \"a\"\nsecond line"));
        let record = record_from_marker(&line).unwrap();
        match crate::wire::side_channel::parse(&record) {
            Some(crate::wire::side_channel::Record::UserError { type_name, message }) => {
                assert_eq!(type_name, "std::io::error::Error");
                assert_eq!(message, "no such file: \"a\"\nsecond line");
            }
            other => panic!("{other:?}"),
        }
        assert!(record_from_marker("plain text").is_none());
        assert!(record_from_marker(&format!("{MARKER}zz 00")).is_none());
    }

    #[test]
    fn type_names_read_as_written() {
        assert_eq!(readable_type_name("std::io::error::Error"), "std::io::Error");
        assert_eq!(readable_type_name("alloc::string::String"), "String");
        assert_eq!(readable_type_name("torchbook::error::Error"), "torchbook::Error");
        assert_eq!(readable_type_name("tch::error::TchError"), "tch::TchError");
        assert_eq!(readable_type_name("core::num::error::ParseIntError"), "core::num::ParseIntError");
    }
}
