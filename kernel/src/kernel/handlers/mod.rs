//! One handler per message type, and the two dispatchers that route shell and control requests
//! to them. Every request is wrapped in `status: busy` / `status: idle` on iopub, parented to it;
//! all output a request causes is published before its `idle`.

mod complete;
pub(crate) mod execute;
mod help;
mod inspect;
mod kernel_info;
mod plain_text;

use crate::kernel::comms::CommAnswer;
use crate::kernel::engine::{Engine, WorkerHandle};
use crate::protocol::messages::{
    CommInfoReply, CommInfoRequest, ExecutionState, HistoryReply, InterruptReply, ReplyStatus, ShutdownReply, ShutdownRequest,
    Status,
};
use crate::protocol::{Content, WireMessage};
use crate::kernel::transport::{Incoming, Iopub, Replier};
use serde_json::json;
use tokio::sync::watch;

pub use kernel_info::kernel_info_reply;

/// What both channels share.
#[derive(Clone)]
pub struct KernelState {
    pub iopub: Iopub,
    pub worker: WorkerHandle,
    /// Set to `Some(restart)` when a shutdown was requested; the main task then exits.
    pub shutdown: watch::Sender<Option<bool>>,
    /// The workers of `:ranks`' extra engines (none with one rank).
    pub extra_workers: crate::kernel::ranks::ExtraWorkers,
}

impl KernelState {
    /// Interrupts the running cell on every rank.
    pub fn interrupt(&self, grace: std::time::Duration) {
        self.worker.interrupt(grace);
        for worker in self.extra_workers.lock().unwrap().iter() {
            worker.interrupt(grace);
        }
    }
}

/// The stdin channel: `input_request` out, `input_reply` back, only while a cell runs.
pub struct Stdin {
    pub incoming: Incoming,
    pub replier: Replier,
}

/// The shell channel's handler: owns the engine, so shell requests run one at a time.
pub struct ShellHandler {
    pub state: KernelState,
    pub replier: Replier,
    pub stdin: Stdin,
    pub engine: Engine,
    pub execution_count: u64,
    pub history: crate::kernel::history::History,
    /// Requests that were already queued when a cell failed with `stop_on_error`: their
    /// execute requests are answered `aborted` (the server loop takes these first).
    pub queued_behind_error: std::collections::VecDeque<WireMessage>,
    /// Shared with the control channel, which answers `comm_info_request` too.
    pub comms: SharedComms,
    /// `:ranks N`'s extra engines.
    pub ranks: crate::kernel::ranks::Ranks,
}

/// The comm registry, used by the shell (opens, messages, closes) and control (info) handlers.
pub type SharedComms = std::sync::Arc<std::sync::Mutex<crate::kernel::comms::CommRegistry>>;

/// The control channel's handler: answered even while a cell runs.
pub struct ControlHandler {
    pub state: KernelState,
    pub replier: Replier,
    pub comms: SharedComms,
    pub usage: crate::kernel::usage::UsageSampler,
}

fn status(state: &KernelState, request: &WireMessage, execution_state: ExecutionState) {
    let content = Content::Status(Status { execution_state });
    state.iopub.publish(content, Some(&request.message.header));
}

impl ShellHandler {
    /// Handles one request; `abort` marks one that was queued behind a `stop_on_error` failure.
    pub async fn handle(&mut self, request: WireMessage, abort: bool, incoming: &mut Incoming) {
        status(&self.state, &request, ExecutionState::Busy);
        match &request.message.content {
            Content::ExecuteRequest(_) if abort => {
                let reply = execute::aborted(self.execution_count);
                self.replier.reply(&request, reply).await;
            }
            Content::ExecuteRequest(execute) => {
                let execute = execute.clone();
                let stop_on_error = execute.stop_on_error && !execute.silent;
                let reply = execute::run(self, &request, execute).await;
                if stop_on_error && matches!(&reply, Content::ExecuteReply(r) if r.status == ReplyStatus::Error) {
                    // Collect what was sent before the client can have seen this error, so that
                    // requests sent in answer to it are not aborted.
                    while let Ok(Some(queued)) =
                        tokio::time::timeout(std::time::Duration::from_millis(5), incoming.next()).await
                    {
                        self.queued_behind_error.push_back(queued);
                    }
                }
                self.replier.reply(&request, reply).await;
            }
            Content::HistoryRequest(query) => {
                let reply = HistoryReply {
                    status: ReplyStatus::Ok,
                    history: self.history.query(query),
                };
                self.replier.reply(&request, Content::HistoryReply(reply)).await;
            }
            Content::KernelInfoRequest(_) => {
                self.replier.reply(&request, kernel_info_reply()).await;
            }
            Content::CompleteRequest(complete) => {
                let reply = complete::complete(&self.engine, complete).await;
                self.replier.reply(&request, reply).await;
            }
            Content::InspectRequest(inspect) => {
                let reply = inspect::inspect(&self.engine, inspect).await;
                self.replier.reply(&request, reply).await;
            }
            Content::IsCompleteRequest(is_complete) => {
                let reply = complete::is_complete(&is_complete.code);
                self.replier.reply(&request, reply).await;
            }
            Content::Unknown { msg_type, content } if msg_type.starts_with("comm_") => {
                self.comm(&request, msg_type, content);
            }
            Content::CommInfoRequest(info) => {
                self.replier.reply(&request, comm_info(&self.comms, info)).await;
            }
            Content::ShutdownRequest(shutdown) => {
                shutdown_now(&self.state, &self.replier, &request, shutdown).await;
            }
            other => not_supported(&self.replier, &request, other.msg_type(), "shell").await,
        }
        status(&self.state, &request, ExecutionState::Idle);
    }
}

impl ShellHandler {
    /// comm_open, comm_msg and comm_close from the frontend, through the registry.
    fn comm(&mut self, request: &WireMessage, msg_type: &str, content: &serde_json::Value) {
        let comm_id = content.get("comm_id").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let data = content.get("data").cloned().unwrap_or_default();
        let answer = match msg_type {
            "comm_open" => {
                let target = content.get("target_name").and_then(|v| v.as_str()).unwrap_or_default();
                let answer = self.comms.lock().unwrap().open(&comm_id, target, &data);
                if answer == CommAnswer::Close {
                    eprintln!("torchbook: no comm target {target:?}; closing comm {comm_id}");
                }
                answer
            }
            "comm_msg" => self.comms.lock().unwrap().message(&comm_id, &data),
            "comm_close" => {
                self.comms.lock().unwrap().close(&comm_id);
                CommAnswer::None
            }
            other => {
                eprintln!("torchbook: ignoring {other}");
                CommAnswer::None
            }
        };
        let send = |msg_type: &str, data: serde_json::Value| {
            let content = Content::Unknown {
                msg_type: msg_type.into(),
                content: json!({"comm_id": comm_id, "data": data}),
            };
            self.state.iopub.publish(content, Some(&request.message.header));
        };
        match answer {
            CommAnswer::None => {}
            CommAnswer::Close => send("comm_close", json!({})),
            CommAnswer::Messages(messages) => messages.into_iter().for_each(|m| send("comm_msg", m)),
        }
    }
}

impl ControlHandler {
    pub async fn handle(&mut self, request: WireMessage) {
        status(&self.state, &request, ExecutionState::Busy);
        match &request.message.content {
            Content::KernelInfoRequest(_) => {
                self.replier.reply(&request, kernel_info_reply()).await;
            }
            Content::InterruptRequest(_) => {
                self.state.interrupt(crate::kernel::engine::interrupt_grace());
                let reply = InterruptReply {
                    status: ReplyStatus::Ok,
                };
                self.replier.reply(&request, Content::InterruptReply(reply)).await;
            }
            Content::ShutdownRequest(shutdown) => {
                shutdown_now(&self.state, &self.replier, &request, shutdown).await;
            }
            Content::CommInfoRequest(info) => {
                self.replier.reply(&request, comm_info(&self.comms, info)).await;
            }
            Content::UsageRequest(_) => {
                let reply = self.usage.sample(self.state.worker.engine_pid());
                self.replier.reply(&request, Content::UsageReply(reply)).await;
            }
            other => not_supported(&self.replier, &request, other.msg_type(), "control").await,
        }
        status(&self.state, &request, ExecutionState::Idle);
    }
}

fn comm_info(comms: &SharedComms, request: &CommInfoRequest) -> Content {
    Content::CommInfoReply(CommInfoReply {
        status: ReplyStatus::Ok,
        comms: comms.lock().unwrap().info(request.target_name.as_deref()),
    })
}

async fn shutdown_now(
    state: &KernelState,
    replier: &Replier,
    request: &WireMessage,
    shutdown: &ShutdownRequest,
) {
    let reply = ShutdownReply {
        status: ReplyStatus::Ok,
        restart: shutdown.restart,
    };
    replier.reply(request, Content::ShutdownReply(reply)).await;
    let _ = state.shutdown.send(Some(shutdown.restart));
}

/// Logs a message type we do not handle. A `*_request` still gets an error reply, because a
/// frontend that waits for a reply would otherwise hang.
async fn not_supported(replier: &Replier, request: &WireMessage, msg_type: &str, channel: &str) {
    eprintln!("torchbook: ignoring unsupported {msg_type} on {channel}");
    if let Some(base) = msg_type.strip_suffix("_request") {
        let content = Content::Unknown {
            msg_type: format!("{base}_reply"),
            content: json!({
                "status": "error",
                "ename": "NotSupported",
                "evalue": format!("torchbook does not handle {msg_type}"),
                "traceback": [],
            }),
        };
        replier.reply(request, content).await;
    }
}
