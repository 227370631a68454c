//! One cell of a headless run: hands the code to the engine and turns what comes back into
//! nbformat outputs, as nbclient records them from iopub — stream text merged per stream,
//! `display_data` with later `update_display_data` applied in place, `clear_output` (with
//! `wait`, at the next output), the `execute_result`, and the `error`.

use crate::kernel::engine::Engine;
use crate::kernel::handlers::execute::{to_bundle, with_text_plain};
use crate::wire::cell_error::CellError;
use crate::wire::engine::{CellOutcome, EngineEvent};
use crate::wire::side_channel::{Record, StreamKind};
use serde_json::{json, Map, Value};

/// What one cell left behind.
#[derive(Debug, Default)]
pub struct CellRun {
    pub outputs: Vec<Value>,
    pub error: Option<CellError>,
}

/// nbformat outputs as they accumulate.
#[derive(Debug, Default)]
struct Outputs {
    outputs: Vec<Value>,
    /// Where each display id's outputs are, for updates.
    displays: Vec<(String, usize)>,
    clear_pending: bool,
}

impl Outputs {
    fn push(&mut self, output: Value) {
        if std::mem::take(&mut self.clear_pending) {
            self.clear();
        }
        self.outputs.push(output);
    }

    fn clear(&mut self) {
        self.outputs.clear();
        self.displays.clear();
    }

    fn stream(&mut self, name: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.clear_pending {
            if let Some(last) = self.outputs.last_mut() {
                if last["output_type"] == "stream" && last["name"] == name {
                    let joined = format!("{}{text}", last["text"].as_str().unwrap_or(""));
                    last["text"] = Value::String(joined);
                    return;
                }
            }
        }
        self.push(json!({"output_type": "stream", "name": name, "text": text}));
    }

    fn record(&mut self, record: Record, failure: &mut Option<CellError>, rendered: &mut Option<Value>) {
        match record {
            Record::Stream { name, text } => {
                self.stream(if name == StreamKind::Stdout { "stdout" } else { "stderr" }, &text)
            }
            Record::Panic { message, location, thread } => {
                failure.get_or_insert_with(|| CellError::panic(&message, &location, &thread));
            }
            Record::UserError { type_name, message } => {
                failure.get_or_insert_with(|| CellError::returned(&type_name, &message));
            }
            Record::Result { data, metadata } => {
                *rendered = Some(json!({"data": with_text_plain(data), "metadata": metadata}));
            }
            Record::Display { data, metadata, display_id } => {
                self.push(json!({"output_type": "display_data", "data": with_text_plain(data), "metadata": metadata}));
                if let Some(id) = display_id {
                    self.displays.push((id, self.outputs.len() - 1));
                }
            }
            Record::UpdateDisplay { data, metadata, display_id } => {
                let data = Value::Object(with_text_plain(data).into_iter().collect::<Map<_, _>>());
                for (_, at) in self.displays.iter().filter(|(id, _)| *id == display_id) {
                    self.outputs[*at]["data"] = data.clone();
                    self.outputs[*at]["metadata"] = Value::Object(metadata.clone());
                }
            }
            Record::ClearOutput { wait: true } => self.clear_pending = true,
            Record::ClearOutput { wait: false } => self.clear(),
        }
    }
}

/// Runs `code` in `engine` and waits for it to finish. A cell that asks for input reads
/// end-of-file (there is nobody to answer), with a note on its stderr.
pub async fn run_cell(engine: &mut Engine, code: &str, execution_count: u64) -> CellRun {
    engine.execute(code);
    let mut outputs = Outputs::default();
    let mut failure = None;
    let mut rendered = None;
    let outcome = loop {
        match engine.next_event().await {
            // Whole lines, their newline taken off (as the kernel's batcher gets them).
            Some(EngineEvent::Stdout(line)) => outputs.stream("stdout", &format!("{line}\n")),
            Some(EngineEvent::Stderr(line)) => outputs.stream("stderr", &format!("{line}\n")),
            Some(EngineEvent::Record(record)) => outputs.record(record, &mut failure, &mut rendered),
            Some(EngineEvent::InputRequest { answer, .. }) => {
                outputs.stream("stderr", "torchbook run: the cell asked for input, which a headless run cannot give: it reads end-of-file\n");
                let _ = answer.send(None);
            }
            Some(EngineEvent::Finished(outcome)) => break outcome,
            None => break CellOutcome::Failed(CellError::engine_unavailable("the engine stopped unexpectedly")),
        }
    };
    let error = match (outcome, failure) {
        (CellOutcome::Failed(error), _) | (CellOutcome::Value(_), Some(error)) => Some(error),
        (CellOutcome::Value(value), None) => {
            let is_unit = value.len() == 1 && value.get("text/plain").is_some_and(|t| t == "()");
            let result = match rendered {
                Some(result) => Some(result),
                None if value.is_empty() || is_unit => None,
                None => Some(json!({"data": to_bundle(value), "metadata": {}})),
            };
            if let Some(mut result) = result {
                result["output_type"] = json!("execute_result");
                result["execution_count"] = json!(execution_count);
                outputs.push(result);
            }
            None
        }
    };
    if let Some(error) = &error {
        outputs.push(json!({
            "output_type": "error",
            "ename": error.ename,
            "evalue": error.evalue,
            "traceback": error.traceback,
        }));
    }
    CellRun { outputs: outputs.outputs, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_replace_their_display_and_clear_waits_for_the_next_output() {
        let mut out = Outputs::default();
        let (mut failure, mut rendered) = (None, None);
        let data = |text: &str| {
            let mut m = Map::new();
            m.insert("text/plain".into(), json!(text));
            m
        };
        out.stream("stdout", "a");
        out.stream("stdout", "b\n");
        out.record(Record::Display { data: data("0%"), metadata: Map::new(), display_id: Some("p".into()) }, &mut failure, &mut rendered);
        out.record(Record::UpdateDisplay { data: data("100%"), metadata: Map::new(), display_id: "p".into() }, &mut failure, &mut rendered);
        assert_eq!(out.outputs.len(), 2);
        assert_eq!(out.outputs[0]["text"], "ab\n");
        assert_eq!(out.outputs[1]["data"]["text/plain"], "100%");
        out.record(Record::ClearOutput { wait: true }, &mut failure, &mut rendered);
        assert_eq!(out.outputs.len(), 2, "clear_output(wait) waits for the next output");
        out.stream("stdout", "c");
        assert_eq!(out.outputs.len(), 1);
        assert_eq!(out.outputs[0]["text"], "c");
        out.record(Record::Panic { message: "boom".into(), location: "x.rs:1".into(), thread: "main".into() }, &mut failure, &mut rendered);
        assert!(failure.is_some());
    }
}
