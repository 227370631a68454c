//! `execute_request`: announce the input, hand the cell to the engine, stream its output to
//! iopub as it arrives (batched), then publish the result or the error and build the reply.

use super::ShellHandler;
use crate::wire::cell_error::CellError;
use crate::wire::engine::{CellOutcome, EngineEvent};
use crate::protocol::messages::{
    ClearOutput, DisplayData, ErrorInfo, ExecuteInput, ExecuteReply, ExecuteRequest,
    ExecuteResult, InputReply, InputRequest, MimeBundle, ReplyStatus, Stream, StreamName,
};
use crate::protocol::{Content, WireMessage};
use crate::wire::side_channel::{mime_value, Record, StreamKind};
use crate::kernel::stream_batcher::StreamBatcher;
use serde_json::{Map, Value};
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

    if execute.code.trim() == ":help" {
        let page = super::help::page(&shell.engine).await;
        if counts {
            shell.history.record(count as i64, &execute.code, None);
        }
        let Content::ExecuteReply(mut reply) = reply(count, None, Default::default()) else {
            unreachable!("reply builds an execute_reply")
        };
        reply.payload.push(page);
        return Content::ExecuteReply(reply);
    }

    let (outcome, rendered) = match crate::kernel::ranks::parse_command(&execute.code) {
        Some(command) => (set_ranks(shell, request, command).await, None),
        None if shell.ranks.world_size() > 1 => {
            let pending = shell.ranks.send(|_| execute.code.clone());
            shell.engine.execute(&execute.code);
            let (outcome, rendered) = stream_until_finished(shell, request, execute.allow_stdin).await;
            (with_other_ranks(shell, outcome, pending).await, rendered)
        }
        None => {
            shell.engine.execute(&execute.code);
            stream_until_finished(shell, request, execute.allow_stdin).await
        }
    };

    let mut shown = None;
    let error = match outcome {
        CellOutcome::Value(value) => {
            // A cell that ends in a statement or a loop evaluates to `()`: like Python's None,
            // it is not worth an Out[] line.
            let is_unit = value.len() == 1 && value.get("text/plain").is_some_and(|t| t == "()");
            let result = match rendered {
                Some((data, metadata)) => Some((data, metadata)),
                None if value.is_empty() || is_unit => None,
                None => Some((to_bundle(value), Default::default())),
            };
            if let Some((data, metadata)) = result {
                shown = data.get("text/plain").and_then(Value::as_str).map(str::to_owned);
                if !execute.silent {
                    let result = ExecuteResult {
                        execution_count: count,
                        data,
                        metadata,
                    };
                    shell.state.iopub.publish(Content::ExecuteResult(result), Some(parent));
                }
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
    reply(count, error, user_expressions)
}

/// `:ranks N`: leaves the current group (if any) and, for N > 1, starts the extra engines and
/// joins all N ranks; rank 0's join runs as this cell, its output shown.
async fn set_ranks(shell: &mut ShellHandler, request: &WireMessage, command: Result<usize, String>) -> CellOutcome {
    use crate::kernel::ranks::{join_code, LEAVE_CODE};
    let n = match command {
        Ok(n) => n,
        Err(usage) => return CellOutcome::Failed(CellError::new("RanksError", usage.clone(), vec![usage])),
    };
    let say = |shell: &ShellHandler, text: String| {
        let stream = Stream { name: StreamName::Stdout, text };
        shell.state.iopub.publish(Content::Stream(stream), Some(&request.message.header));
    };
    let current = shell.ranks.world_size();
    if n == current {
        say(shell, format!("{n} rank(s) already\n"));
        return CellOutcome::Value(Default::default());
    }
    if current > 1 {
        let pending = shell.ranks.send(|_| LEAVE_CODE.to_owned());
        crate::run::cell::run_cell(&mut shell.engine, LEAVE_CODE, 0).await;
        pending.first_error().await;
        shell.ranks.stop();
        if n == 1 {
            say(shell, format!("left the group of {current} ranks: cells run on this engine alone\n"));
            return CellOutcome::Value(Default::default());
        }
    }
    let port = match crate::run::launcher::free_port() {
        Ok(port) => port,
        Err(e) => return CellOutcome::Failed(CellError::new("RanksError", format!("no free port for the store: {e}"), vec![])),
    };
    if let Err(reason) = shell.ranks.start(n) {
        return CellOutcome::Failed(CellError::new("RanksError", reason.clone(), vec![reason]));
    }
    let pending = shell.ranks.send(|rank| join_code(rank, n, port));
    shell.engine.execute(&join_code(0, n, port));
    let (outcome, _) = stream_until_finished(shell, request, false).await;
    let outcome = with_other_ranks(shell, outcome, pending).await;
    match outcome {
        CellOutcome::Value(_) => {
            say(shell, format!(
                "{n} ranks joined (rank 0 is this engine, ranks 1 to {} run in engines of their own): the following cells run on all of them, `fit` data-parallel; `:ranks 1` returns to one engine\n",
                n - 1
            ));
            CellOutcome::Value(Default::default())
        }
        failed => {
            shell.ranks.stop();
            crate::run::cell::run_cell(&mut shell.engine, LEAVE_CODE, 0).await;
            failed
        }
    }
}

/// Waits for the extra ranks' run of the cell. Rank 0's error wins; else the first other
/// rank's, marked with its rank. When rank 0 failed the others are interrupted: they would
/// wait for it in their next collective until the timeout.
async fn with_other_ranks(shell: &ShellHandler, outcome: CellOutcome, pending: crate::kernel::ranks::Pending) -> CellOutcome {
    if matches!(outcome, CellOutcome::Failed(_)) {
        shell.ranks.interrupt(crate::kernel::engine::interrupt_grace());
        pending.first_error().await;
        return outcome;
    }
    match pending.first_error().await {
        Some(error) => CellOutcome::Failed(error),
        None => outcome,
    }
}

fn reply(count: u64, error: Option<ErrorInfo>, user_expressions: Map<String, Value>) -> Content {
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

/// The cell's value as the cell side rendered it (a `result` record).
type Rendered = (MimeBundle, Map<String, Value>);

/// Forwards output until the cell finishes: stream text in batches, side-channel records as
/// display messages in their place among the text. A panic or an error passed on with `?`,
/// reported on the side channel, turns an otherwise successful outcome into an error (evcxr
/// catches the unwind, and reports an early return by `?` as success).
async fn stream_until_finished(
    shell: &mut ShellHandler,
    request: &WireMessage,
    allow_stdin: bool,
) -> (CellOutcome, Option<Rendered>) {
    let parent = &request.message.header;
    let mut batcher = StreamBatcher::default();
    let mut failure: Option<CellError> = None;
    let mut rendered = None;
    let iopub = shell.state.iopub.clone();
    let publish = |content: Content| iopub.publish(content, Some(parent));
    let send = |batch: Option<Stream>| {
        if let Some(stream) = batch {
            publish(Content::Stream(stream));
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
        let record = match event {
            Some(EngineEvent::Stdout(line)) => {
                send(batcher.push(StreamName::Stdout, &line));
                continue;
            }
            Some(EngineEvent::Stderr(line)) => {
                send(batcher.push(StreamName::Stderr, &line));
                continue;
            }
            Some(EngineEvent::Record(record)) => record,
            Some(EngineEvent::InputRequest { prompt, password, answer }) => {
                // The prompt belongs after what the cell printed before asking.
                send(batcher.take());
                let value = read_input(shell, request, allow_stdin, prompt, password).await;
                let _ = answer.send(value);
                continue;
            }
            Some(EngineEvent::Finished(outcome)) => break outcome,
            None => {
                break CellOutcome::Failed(CellError::engine_unavailable(
                    "the engine thread stopped unexpectedly",
                ))
            }
        };
        match record {
            Record::Stream { name, text } => {
                let name = match name {
                    StreamKind::Stdout => StreamName::Stdout,
                    StreamKind::Stderr => StreamName::Stderr,
                };
                send(batcher.push_text(name, &text));
            }
            Record::Panic {
                message,
                location,
                thread,
            } => {
                failure.get_or_insert_with(|| CellError::panic(&message, &location, &thread));
            }
            Record::UserError { type_name, message } => {
                failure.get_or_insert_with(|| CellError::returned(&type_name, &message));
            }
            Record::Result { data, metadata } => rendered = Some((with_text_plain(data), metadata)),
            // Text printed before a display must appear before it.
            display => {
                send(batcher.take());
                publish(display_message(display));
            }
        }
    };
    for stream in batcher.finish() {
        publish(Content::Stream(stream));
    }
    match (outcome, failure) {
        (CellOutcome::Value(_), Some(failure)) => (CellOutcome::Failed(failure), None),
        (outcome, _) => (outcome, rendered),
    }
}

/// Asks the frontend for a line of input on the stdin channel and waits for the reply. `None`
/// (end-of-file for the cell) when the frontend does not take input, or when the user
/// interrupts the wait (Zeppelin, for one, never answers).
async fn read_input(
    shell: &mut ShellHandler,
    request: &WireMessage,
    allow_stdin: bool,
    prompt: String,
    password: bool,
) -> Option<String> {
    if !allow_stdin {
        let note = "torchbook: the cell asked for input, but this frontend does not accept input \
                    (allow_stdin is false): the cell reads end-of-file\n";
        let stream = Stream { name: StreamName::Stderr, text: note.to_owned() };
        shell.state.iopub.publish(Content::Stream(stream), Some(&request.message.header));
        return None;
    }
    let mut interrupts = shell.state.worker.interrupt_events();
    interrupts.borrow_and_update();
    let ask = Content::InputRequest(InputRequest { prompt, password });
    shell.stdin.replier.reply(request, ask).await;
    loop {
        tokio::select! {
            message = shell.stdin.incoming.next() => match message {
                Some(reply) => match reply.message.content {
                    Content::InputReply(InputReply { value }) => return Some(value),
                    other => eprintln!("torchbook: ignoring {} on stdin", other.msg_type()),
                },
                None => return None,
            },
            _ = interrupts.changed() => return None,
        }
    }
}

/// The iopub message for a display record.
fn display_message(record: Record) -> Content {
    let transient = |id: Option<String>| {
        let mut transient = Map::new();
        if let Some(id) = id {
            transient.insert("display_id".to_owned(), Value::String(id));
        }
        transient
    };
    match record {
        Record::Display {
            data,
            metadata,
            display_id,
        } => Content::DisplayData(DisplayData {
            data: with_text_plain(data),
            metadata,
            transient: transient(display_id),
        }),
        Record::UpdateDisplay {
            data,
            metadata,
            display_id,
        } => Content::UpdateDisplayData(DisplayData {
            data: with_text_plain(data),
            metadata,
            transient: transient(Some(display_id)),
        }),
        Record::ClearOutput { wait } => Content::ClearOutput(ClearOutput { wait }),
        other => unreachable!("not a display record: {other:?}"),
    }
}

/// Every bundle carries `text/plain`, for frontends that show nothing else.
pub(crate) fn with_text_plain(data: Map<String, Value>) -> MimeBundle {
    let mut bundle: MimeBundle = data.into_iter().collect();
    if !bundle.contains_key("text/plain") {
        let members: Vec<(&str, &Value)> = bundle.iter().map(|(mime, value)| (mime.as_str(), value)).collect();
        let text = super::plain_text::fallback(&members);
        bundle.insert("text/plain".to_owned(), Value::String(text));
    }
    bundle
}

/// evcxr gives every MIME type as text; JSON types must travel as JSON, and every bundle needs
/// `text/plain`.
pub(crate) fn to_bundle(value: HashMap<String, String>) -> MimeBundle {
    let mut bundle = MimeBundle::new();
    for (mime, text) in value {
        let data = mime_value(&mime, text);
        bundle.insert(mime, data);
    }
    with_text_plain(bundle.into_iter().collect())
}
