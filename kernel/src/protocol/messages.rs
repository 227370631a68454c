//! Typed Jupyter messages: one [`Content`] variant per message type the kernel reads or writes,
//! each a plain serde struct shaped like the spec (messaging.rst, protocol 5.5). Types the kernel
//! does not know are kept as [`Content::Unknown`] so that a channel can log them and carry on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `header` (and `parent_header`) of a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    #[serde(default)]
    pub msg_id: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub date: String,
    pub msg_type: String,
    #[serde(default)]
    pub version: String,
}

/// A decoded message, without routing identities.
#[derive(Debug, Clone)]
pub struct Message {
    pub header: Header,
    pub parent_header: Option<Header>,
    pub metadata: Value,
    pub content: Content,
    pub buffers: Vec<bytes::Bytes>,
}

impl Message {
    /// A new message with a fresh id, stamped now, in reply to (or caused by) `parent`.
    pub fn new(content: Content, parent: Option<&Header>, session: &str) -> Self {
        Message {
            header: Header {
                msg_id: uuid::Uuid::new_v4().to_string(),
                session: session.to_owned(),
                username: "torchbook".to_owned(),
                date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                msg_type: content.msg_type().to_owned(),
                version: super::PROTOCOL_VERSION.to_owned(),
            },
            parent_header: parent.cloned(),
            metadata: Value::Object(Map::new()),
            content,
            buffers: Vec::new(),
        }
    }
}

/// `ok` / `error` / `aborted`, as every reply carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    Ok,
    Error,
    Aborted,
}

/// The three fields that describe an error, in replies and in the iopub `error` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

/// A MIME bundle: `mime type → data`.
pub type MimeBundle = BTreeMap<String, Value>;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct KernelInfoRequest {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanguageInfo {
    pub name: String,
    pub version: String,
    pub mimetype: String,
    pub file_extension: String,
    pub pygments_lexer: String,
    pub codemirror_mode: String,
    pub nbconvert_exporter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelpLink {
    pub text: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelInfoReply {
    pub status: ReplyStatus,
    pub protocol_version: String,
    pub implementation: String,
    pub implementation_version: String,
    pub language_info: LanguageInfo,
    pub banner: String,
    pub help_links: Vec<HelpLink>,
    pub debugger: bool,
    /// JEP 92's optional features this kernel implements (`debugger`, `kernel subshells`).
    #[serde(default)]
    pub supported_features: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub code: String,
    #[serde(default)]
    pub silent: bool,
    #[serde(default = "yes")]
    pub store_history: bool,
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
    #[serde(default = "yes")]
    pub allow_stdin: bool,
    #[serde(default = "yes")]
    pub stop_on_error: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteReply {
    pub status: ReplyStatus,
    pub execution_count: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
    #[serde(default)]
    pub payload: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteInput {
    pub code: String,
    pub execution_count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteResult {
    pub execution_count: u64,
    pub data: MimeBundle,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisplayData {
    pub data: MimeBundle,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub transient: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectRequest {
    pub code: String,
    pub cursor_pos: usize,
    #[serde(default)]
    pub detail_level: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectReply {
    pub status: ReplyStatus,
    pub found: bool,
    pub data: MimeBundle,
    pub metadata: Map<String, Value>,
}

/// `input_request` (stdin channel): the cell waits for one line from the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputRequest {
    pub prompt: String,
    #[serde(default)]
    pub password: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputReply {
    #[serde(default)]
    pub value: String,
}

/// `clear_output`: with `wait`, the frontend clears only when the next output arrives, which
/// avoids flicker in live displays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearOutput {
    #[serde(default)]
    pub wait: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stream {
    pub name: StreamName,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionState {
    Busy,
    Idle,
    Starting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub execution_state: ExecutionState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IopubWelcome {
    pub subscription: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ShutdownRequest {
    #[serde(default)]
    pub restart: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownReply {
    pub status: ReplyStatus,
    pub restart: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct InterruptRequest {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterruptReply {
    pub status: ReplyStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub code: String,
    pub cursor_pos: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteReply {
    pub status: ReplyStatus,
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsCompleteRequest {
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsCompleteReply {
    /// `complete`, `incomplete`, `invalid` or `unknown`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CommInfoRequest {
    #[serde(default)]
    pub target_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommInfoReply {
    pub status: ReplyStatus,
    pub comms: Map<String, Value>,
}

/// `usage_request` (control channel): no content. Sent by jupyter-resource-usage, JupyterLab's
/// resource indicator, every few seconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct UsageRequest {}

/// `usage_reply`, as ipykernel 7 answers it: the kernel's processes' CPU (percent of one core,
/// summed, since the previous request) and memory (PSS bytes, summed), and the host's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageReply {
    pub hostname: String,
    pub pid: u32,
    pub kernel_cpu: f64,
    pub kernel_memory: u64,
    /// Left out on the first request, as psutil's first `cpu_percent()` means nothing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host_cpu_percent: Option<f64>,
    pub cpu_count: usize,
    /// psutil's `virtual_memory()` fields: total, available, percent, used, free, active,
    /// inactive, buffers, cached, shared, slab.
    pub host_virtual_memory: Map<String, Value>,
}

/// `history_request`: tail, range or search (messaging spec).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub output: bool,
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub hist_access_type: String,
    #[serde(default)]
    pub session: i64,
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub stop: Option<i64>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryReply {
    pub status: ReplyStatus,
    /// `[session, line, input]` or `[session, line, [input, output]]`.
    pub history: Vec<Value>,
}

/// Declares [`Content`] with one variant per message type and its wire name.
macro_rules! contents {
    ($($variant:ident($ty:ty) => $name:literal,)*) => {
        /// The content of a message, typed by its `msg_type`.
        #[derive(Debug, Clone)]
        pub enum Content {
            $($variant($ty),)*
            /// A `msg_type` this kernel does not handle, kept as raw JSON.
            Unknown { msg_type: String, content: Value },
        }

        impl Content {
            /// The `msg_type` this content travels under.
            pub fn msg_type(&self) -> &str {
                match self {
                    $(Content::$variant(_) => $name,)*
                    Content::Unknown { msg_type, .. } => msg_type,
                }
            }

            /// Types the content frame by the header's `msg_type`.
            pub fn from_parts(msg_type: &str, content: Value) -> Result<Self, serde_json::Error> {
                Ok(match msg_type {
                    $($name => Content::$variant(serde_json::from_value(content)?),)*
                    _ => Content::Unknown { msg_type: msg_type.to_owned(), content },
                })
            }

            /// The content as JSON for the wire.
            pub fn to_value(&self) -> Value {
                match self {
                    $(Content::$variant(c) => serde_json::to_value(c).expect("content serialises"),)*
                    Content::Unknown { content, .. } => content.clone(),
                }
            }
        }
    };
}

contents! {
    KernelInfoRequest(KernelInfoRequest) => "kernel_info_request",
    KernelInfoReply(KernelInfoReply) => "kernel_info_reply",
    ExecuteRequest(ExecuteRequest) => "execute_request",
    ExecuteReply(ExecuteReply) => "execute_reply",
    ExecuteInput(ExecuteInput) => "execute_input",
    ExecuteResult(ExecuteResult) => "execute_result",
    DisplayData(DisplayData) => "display_data",
    UpdateDisplayData(DisplayData) => "update_display_data",
    ClearOutput(ClearOutput) => "clear_output",
    Stream(Stream) => "stream",
    Error(ErrorInfo) => "error",
    Status(Status) => "status",
    IopubWelcome(IopubWelcome) => "iopub_welcome",
    ShutdownRequest(ShutdownRequest) => "shutdown_request",
    ShutdownReply(ShutdownReply) => "shutdown_reply",
    InterruptRequest(InterruptRequest) => "interrupt_request",
    InterruptReply(InterruptReply) => "interrupt_reply",
    CompleteRequest(CompleteRequest) => "complete_request",
    CompleteReply(CompleteReply) => "complete_reply",
    IsCompleteRequest(IsCompleteRequest) => "is_complete_request",
    IsCompleteReply(IsCompleteReply) => "is_complete_reply",
    CommInfoRequest(CommInfoRequest) => "comm_info_request",
    CommInfoReply(CommInfoReply) => "comm_info_reply",
    HistoryRequest(HistoryRequest) => "history_request",
    HistoryReply(HistoryReply) => "history_reply",
    InspectRequest(InspectRequest) => "inspect_request",
    InspectReply(InspectReply) => "inspect_reply",
    InputRequest(InputRequest) => "input_request",
    InputReply(InputReply) => "input_reply",
    UsageRequest(UsageRequest) => "usage_request",
    UsageReply(UsageReply) => "usage_reply",
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn execute_request_defaults() {
        let c = Content::from_parts("execute_request", json!({"code": "1 + 1"})).unwrap();
        let Content::ExecuteRequest(req) = c else {
            panic!("wrong variant")
        };
        assert!(req.store_history && req.allow_stdin && req.stop_on_error && !req.silent);
    }

    #[test]
    fn error_reply_is_flat() {
        let reply = Content::ExecuteReply(ExecuteReply {
            status: ReplyStatus::Error,
            execution_count: 3,
            error: Some(ErrorInfo {
                ename: "Panic".into(),
                evalue: "boom".into(),
                traceback: vec!["boom".into()],
            }),
            user_expressions: Map::new(),
            payload: vec![],
        });
        let v = reply.to_value();
        assert_eq!(v["status"], "error");
        assert_eq!(v["ename"], "Panic");
        assert_eq!(v["execution_count"], 3);
    }

    #[test]
    fn unknown_types_are_kept() {
        let c = Content::from_parts("frobnicate_request", json!({"a": 1})).unwrap();
        assert_eq!(c.msg_type(), "frobnicate_request");
        assert_eq!(c.to_value(), json!({"a": 1}));
    }

    #[test]
    fn wrong_content_shape_is_an_error() {
        assert!(Content::from_parts("execute_request", json!({"code": 5})).is_err());
    }
}
