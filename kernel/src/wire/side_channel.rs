//! The side channel from cell code to the kernel: records framed as single lines on the worker's
//! stdout, `\x1e` (ASCII record separator) + `torchbook ` + one JSON object. evcxr passes stdout
//! through line by line and in order, so a record keeps its place among the cell's printed text.
//! The format is specified in docs/ARCHITECTURE.md; `torchbook-display` writes the same framing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The marker that starts every record line.
pub const RECORD_PREFIX: &str = "\u{1e}torchbook ";

/// One record from the worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A panic in cell code, reported by the panic hook installed in every worker.
    Panic {
        message: String,
        #[serde(default)]
        location: String,
        #[serde(default)]
        thread: String,
    },
    /// An error the cell passed on with `?` (see `question_mark`): its type as
    /// `std::any::type_name` spells it (empty when unknown) and its message.
    UserError {
        #[serde(default)]
        type_name: String,
        #[serde(default)]
        message: String,
    },
    /// A new output (`display_data`); with a `display_id`, later updates can replace it.
    Display {
        data: Map<String, Value>,
        #[serde(default)]
        metadata: Map<String, Value>,
        #[serde(default)]
        display_id: Option<String>,
    },
    /// New content for an earlier output (`update_display_data`).
    UpdateDisplay {
        data: Map<String, Value>,
        #[serde(default)]
        metadata: Map<String, Value>,
        display_id: String,
    },
    /// `clear_output`; with `wait`, the frontend clears when the next output arrives.
    ClearOutput {
        #[serde(default)]
        wait: bool,
    },
    /// The cell's value rendered by the cell side (`Render`), shown as its `execute_result`.
    Result {
        data: Map<String, Value>,
        #[serde(default)]
        metadata: Map<String, Value>,
    },
    /// Text that has waited for a newline long enough (from the worker's output relay).
    Stream { name: StreamKind, text: String },
}

/// Which of the worker's streams a `Stream` record carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// evcxr carries every MIME type as text; JSON types (`application/json`, `*+json`) must travel
/// as JSON. Text that does not parse stays text.
pub fn mime_value(mime: &str, text: String) -> Value {
    let is_json = mime == "application/json" || mime.ends_with("+json");
    match is_json.then(|| serde_json::from_str(&text)) {
        Some(Ok(json)) => json,
        _ => Value::String(text),
    }
}

/// Reads a record from a stdout line; `None` for ordinary output. A line that carries the marker
/// but not a valid record is shown as ordinary text rather than silently lost.
pub fn parse(line: &str) -> Option<Record> {
    let json = line.strip_prefix(RECORD_PREFIX)?;
    match serde_json::from_str(json) {
        Ok(record) => Some(record),
        Err(e) => {
            eprintln!("torchbook: unreadable side-channel record ({e}): {json}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_record() {
        let line = "\u{1e}torchbook {\"type\":\"panic\",\"message\":\"boom\\n\",\"location\":\"src/lib.rs:3:5\",\"thread\":\"main\"}";
        assert_eq!(
            parse(line),
            Some(Record::Panic {
                message: "boom\n".into(),
                location: "src/lib.rs:3:5".into(),
                thread: "main".into()
            })
        );
    }

    #[test]
    fn display_records() {
        let line = "\u{1e}torchbook {\"type\":\"display\",\"data\":{\"text/plain\":\"x\"},\"display_id\":\"d1\"}";
        let Some(Record::Display { data, display_id, metadata }) = parse(line) else {
            panic!("not a display record");
        };
        assert_eq!(data["text/plain"], "x");
        assert_eq!(display_id.as_deref(), Some("d1"));
        assert!(metadata.is_empty());
        let line = "\u{1e}torchbook {\"type\":\"clear_output\",\"wait\":true}";
        assert_eq!(parse(line), Some(Record::ClearOutput { wait: true }));
        let line = "\u{1e}torchbook {\"type\":\"stream\",\"name\":\"stderr\",\"text\":\"50%\\r\"}";
        assert_eq!(
            parse(line),
            Some(Record::Stream { name: StreamKind::Stderr, text: "50%\r".into() })
        );
    }

    #[test]
    fn plain_and_broken_lines_are_not_records() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("\u{1e}torchbook {not json"), None);
        assert_eq!(parse("\u{1e}torchbook {\"type\":\"nope\"}"), None);
    }
}
