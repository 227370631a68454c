//! The pipe between the kernel and its engine process: one JSON object per line, requests on
//! the engine's stdin and events on its stdout (see `kernel::engine` for the kernel's side and
//! `engine` for the engine's), and the events and answers both sides pass around.
//!
//! Cell events arrive in the order the user must see them, ending with `Finished`. Answers to
//! `Evaluate`, `Complete` and `Inspect` carry the id of their request and may arrive between
//! cell events.

use crate::wire::cell_error::CellError;
use std::collections::HashMap;
use crate::wire::side_channel::Record;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// What the kernel asks of the engine.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToEngine {
    Execute { code: String },
    /// An expression evaluated for its value alone (`user_expressions`, inspection, `:help`).
    Evaluate { id: u64, expression: String },
    Complete { id: u64, code: String, byte_pos: usize },
    Inspect { id: u64, code: String, byte_pos: usize },
    /// The answer to the last `InputRequest`; `None` is end-of-file.
    InputReply { value: Option<String> },
    /// SIGINT to the worker (the prelude turns it into the flag `fit` polls).
    InterruptWorker,
    KillWorker,
}

/// What the engine reports.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromEngine {
    Stdout { text: String },
    Stderr { text: String },
    Record { record: Record },
    InputRequest { prompt: String, password: bool },
    Finished { outcome: CellOutcome },
    Evaluated { id: u64, outcome: CellOutcome },
    Completed { id: u64, completions: Completions },
    Inspected { id: u64, inspection: Inspection },
    /// The engine finished its warm-up (or its first request): a spare for the next kernel may
    /// start without competing with this kernel's first cell.
    Warm,
}

/// Writes one message as a line. Serialising these types cannot fail (string keys only).
pub fn write_line<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cell_error::CellError;
    use std::collections::HashMap;

    #[test]
    fn messages_survive_the_pipe() {
        let mut out = Vec::new();
        write_line(&mut out, &FromEngine::Stdout { text: "a \"quoted\"\nline".into() }).unwrap();
        let failed = CellOutcome::Failed(CellError::engine_died("killed by signal 9"));
        write_line(&mut out, &FromEngine::Finished { outcome: failed }).unwrap();
        let value = CellOutcome::Value(HashMap::from([("text/plain".to_owned(), "2".to_owned())]));
        write_line(&mut out, &FromEngine::Evaluated { id: 7, outcome: value }).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "one line per message: {text}");
        match serde_json::from_str(lines[0]).unwrap() {
            FromEngine::Stdout { text } => assert_eq!(text, "a \"quoted\"\nline"),
            other => panic!("{other:?}"),
        }
        match serde_json::from_str(lines[1]).unwrap() {
            FromEngine::Finished { outcome: CellOutcome::Failed(e) } => assert_eq!(e.ename, "EngineDied"),
            other => panic!("{other:?}"),
        }
        match serde_json::from_str(lines[2]).unwrap() {
            FromEngine::Evaluated { id: 7, outcome: CellOutcome::Value(v) } => assert_eq!(v["text/plain"], "2"),
            other => panic!("{other:?}"),
        }
        let request: ToEngine = serde_json::from_str(r#"{"type":"input_reply","value":null}"#).unwrap();
        assert!(matches!(request, ToEngine::InputReply { value: None }));
    }

    /// Found by fuzzing (fuzz/regressions/engine_records/float_last_digit): serde_json's default
    /// float parser read these one unit in the last place off, so a number in display data
    /// changed on each hop to the frontend (fixed with its `float_roundtrip` feature).
    #[test]
    fn numbers_keep_their_last_digit() {
        let line = r#"{"type":"record","record":{"type":"result","data":{"application/json":[5.555555555555555e+122,0.30000000000000004,1.2345678901234567e-300]}}}"#;
        let event: FromEngine = serde_json::from_str(line).unwrap();
        let mut out = Vec::new();
        write_line(&mut out, &event).unwrap();
        let again: FromEngine = serde_json::from_str(std::str::from_utf8(&out).unwrap()).unwrap();
        let FromEngine::Record { record: Record::Result { data, .. } } = again else { panic!("{again:?}") };
        let numbers: Vec<f64> = data["application/json"].as_array().unwrap().iter().map(|n| n.as_f64().unwrap()).collect();
        assert_eq!(numbers, [5.555555555555555e+122, 0.30000000000000004, 1.2345678901234567e-300]);
    }
}

/// What a cell produced once it finished: its value by MIME type, or an error for the user.
#[derive(Debug, Serialize, Deserialize)]
pub enum CellOutcome {
    Value(HashMap<String, String>),
    Failed(CellError),
}

/// One thing the engine reports, in the order the user should see it.
#[derive(Debug)]
pub enum EngineEvent {
    Stdout(String),
    Stderr(String),
    Record(Record),
    /// The cell waits for a line of input; send `None` for end-of-file (no input to give).
    InputRequest {
        prompt: String,
        password: bool,
        answer: std::sync::mpsc::Sender<Option<String>>,
    },
    Finished(CellOutcome),
}

/// Completion candidates from evcxr's analyser, with the byte range they replace.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Completions {
    pub matches: Vec<String>,
    pub start: usize,
    pub end: usize,
}

/// What the analyser and the session know about the name at a position.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Inspection {
    /// rust-analyzer's hover: signature and docs, as text and HTML.
    pub hover: Option<(String, String)>,
    /// The type, when the name is a variable of the session.
    pub variable_type: Option<String>,
}

