//! `execute_request`: announce the input, hand the cell to the engine, stream its output to
//! iopub as it arrives (batched), then publish the result or the error and build the reply.

use super::ShellHandler;
use crate::cell_error::CellError;
use crate::engine::{CellOutcome, EngineEvent};
use crate::protocol::messages::{
    ErrorInfo, ExecuteInput, ExecuteReply, ExecuteRequest, ExecuteResult, MimeBundle, ReplyStatus,
    StreamName,
};
use crate::protocol::{Content, Header, WireMessage};
use crate::side_channel::Record;
use crate::stream_batcher::StreamBatcher;
use serde_json::Value;
use std::collections::HashMap;

pub async fn run(shell: &mut ShellHandler, request: &WireMessage, execute: ExecuteRequest) -> Content {
    let parent = &request.message.header;
    let counts = !execute.silent && execute.store_history;
    if counts {
        shell.execution_count += 1;
    }
    let count = shell.execution_count;
    if !execute.silent {
        let input = ExecuteInput {
            code: execute.code.clone(),
            execution_count: count,
        };
        shell.state.iopub.publish(Content::ExecuteInput(input), Some(parent));
    }

    shell.engine.execute(&execute.code);
    let outcome = stream_until_finished(shell, parent).await;

    let mut shown = None;
    let error = match outcome {
        CellOutcome::Value(value) => {
            shown = value.get("text/plain").cloned();
            // A cell that ends in a statement or a loop evaluates to `()`: like Python's None,
            // it is not worth an Out[] line.
            let is_unit = value.len() == 1 && value.get("text/plain").is_some_and(|t| t == "()");
            if !execute.silent && !value.is_empty() && !is_unit {
                let result = ExecuteResult {
                    execution_count: count,
                    data: to_bundle(value),
                    metadata: Default::default(),
                };
                shell.state.iopub.publish(Content::ExecuteResult(result), Some(parent));
            }
            None
        }
        CellOutcome::Failed(error) => {
            let info = ErrorInfo::from(error);
            if !execute.silent {
                shell.state.iopub.publish(Content::Error(info.clone()), Some(parent));
            }
            Some(info)
        }
    };
    if counts {
        shell.history.record(count as i64, &execute.code, shown);
    }
    // As IPython does: user expressions are evaluated after a cell that succeeded.
    let mut user_expressions = serde_json::Map::new();
    if error.is_none() {
        for (name, expression) in &execute.user_expressions {
            let value = match expression.as_str() {
                Some(code) => expression_result(shell.engine.evaluate(code).await),
                None => serde_json::json!({"status": "error", "ename": "TypeError",
                    "evalue": "a user expression must be a string of Rust code", "traceback": []}),
            };
            user_expressions.insert(name.clone(), value);
        }
    }
    Content::ExecuteReply(ExecuteReply {
        status: if error.is_some() {
            ReplyStatus::Error
        } else {
            ReplyStatus::Ok
        },
        execution_count: count,
        error,
        user_expressions,
        payload: Vec::new(),
    })
}

/// One `user_expressions` entry: the value as a MIME bundle, or the error.
fn expression_result(outcome: CellOutcome) -> Value {
    match outcome {
        CellOutcome::Value(value) => serde_json::json!({
            "status": "ok",
            "data": to_bundle(value),
            "metadata": {},
        }),
        CellOutcome::Failed(error) => serde_json::json!({
            "status": "error",
            "ename": error.ename,
            "evalue": error.evalue,
            "traceback": error.traceback,
        }),
    }
}

/// The reply for an execute request dropped because an earlier cell failed with
/// `stop_on_error`: nothing runs, the count does not move.
pub fn aborted(execution_count: u64) -> Content {
    Content::ExecuteReply(ExecuteReply {
        status: ReplyStatus::Aborted,
        execution_count,
        error: None,
        user_expressions: Default::default(),
        payload: Vec::new(),
    })
}

/// Forwards output until the cell finishes. A panic reported on the side channel turns an
/// otherwise successful outcome into a `Panic` error (evcxr itself catches the unwind).
async fn stream_until_finished(shell: &mut ShellHandler, parent: &Header) -> CellOutcome {
    let mut batcher = StreamBatcher::default();
    let mut panic: Option<CellError> = None;
    let iopub = shell.state.iopub.clone();
    let send = |batch: Option<crate::protocol::messages::Stream>| {
        if let Some(stream) = batch {
            iopub.publish(Content::Stream(stream), Some(parent));
        }
    };
    let outcome = loop {
        let deadline = batcher.deadline();
        let event = tokio::select! {
            event = shell.engine.next_event() => event,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() => {
                send(batcher.take());
                continue;
            }
        };
        match event {
            Some(EngineEvent::Stdout(line)) => send(batcher.push(StreamName::Stdout, &line)),
            Some(EngineEvent::Stderr(line)) => send(batcher.push(StreamName::Stderr, &line)),
            Some(EngineEvent::Record(Record::Panic {
                message,
                location,
                thread,
            })) => {
                panic.get_or_insert_with(|| CellError::panic(&message, &location, &thread));
            }
            Some(EngineEvent::Finished(outcome)) => break outcome,
            None => {
                break CellOutcome::Failed(CellError::engine_unavailable(
                    "the engine thread stopped unexpectedly",
                ))
            }
        }
    };
    send(batcher.take());
    match (outcome, panic) {
        (CellOutcome::Value(_), Some(panic)) => CellOutcome::Failed(panic),
        (outcome, _) => outcome,
    }
}

/// evcxr gives every MIME type as text; JSON types must travel as JSON, and every bundle needs
/// `text/plain`.
fn to_bundle(value: HashMap<String, String>) -> MimeBundle {
    let mut bundle = MimeBundle::new();
    for (mime, text) in value {
        let is_json = mime == "application/json" || mime.ends_with("+json");
        let data = match is_json.then(|| serde_json::from_str(&text)) {
            Some(Ok(json)) => json,
            _ => Value::String(text),
        };
        bundle.insert(mime, data);
    }
    if !bundle.contains_key("text/plain") {
        let kinds: Vec<&str> = bundle.keys().map(String::as_str).collect();
        let summary = format!("<{}>", kinds.join(", "));
        bundle.insert("text/plain".to_owned(), Value::String(summary));
    }
    bundle
}
