//! A small Jupyter client for the integration tests: starts the real `torchbook` binary with a
//! generated connection file and talks ZeroMQ to it. Every wait has a deadline, so a kernel that
//! hangs fails the test instead of hanging it.

#![allow(dead_code)]

use bytes::Bytes;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use torchbook_kernel::protocol::{Content, Message, Signer, WireMessage};
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage};

/// Long enough for a first cell on a busy 2-core machine (evcxr warms up a worker and rustc).
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub struct TestKernel {
    pub process: Child,
    pub key: String,
    pub shell: DealerSocket,
    /// Shares the shell socket's identity, as Jupyter clients do, so the kernel can route
    /// `input_request` to it.
    pub stdin: DealerSocket,
    pub control: DealerSocket,
    pub iopub: SubSocket,
    pub heartbeat: ReqSocket,
    /// `ipc://<folder>/kernel-` : the kernel's channels are this plus their number.
    endpoint_base: String,
    pub signer: Signer,
    pub session: String,
    dir: PathBuf,
}

#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub shell: u16,
    pub control: u16,
    pub stdin: u16,
    pub iopub: u16,
    pub hb: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_torchbook"))
}

/// Writes a connection file; returns its path and ports.
pub fn connection_file(dir: &std::path::Path, key: &str) -> (PathBuf, Ports) {
    let ports = Ports {
        shell: free_port(),
        control: free_port(),
        stdin: free_port(),
        iopub: free_port(),
        hb: free_port(),
    };
    let info = json!({
        "transport": "tcp", "ip": "127.0.0.1", "key": key, "signature_scheme": "hmac-sha256",
        "shell_port": ports.shell, "control_port": ports.control, "stdin_port": ports.stdin,
        "iopub_port": ports.iopub, "hb_port": ports.hb, "kernel_name": "torchbook"
    });
    let path = dir.join("connection.json");
    std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
    (path, ports)
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("torchbook-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn timed<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

impl TestKernel {
    /// Starts a kernel without the tch prelude (protocol tests need only plain Rust).
    pub async fn start() -> TestKernel {
        Self::start_with_env(&[("TORCHBOOK_PRELUDE", "0")]).await
    }

    /// Starts a kernel as a user gets it: with the prelude (needs LIBTORCH, as `make test` sets).
    pub async fn start_with_prelude() -> TestKernel {
        assert!(
            std::env::var_os("LIBTORCH").is_some(),
            "LIBTORCH is not set: run the tests through `make test`, which provides libtorch"
        );
        Self::start_with_env(&[]).await
    }

    /// Starts a kernel (without the prelude) as the leader of its own process group, as
    /// jupyter_client starts kernels, so a test can signal the whole group.
    pub async fn start_in_own_process_group() -> TestKernel {
        Self::launch(&[("TORCHBOOK_PRELUDE", "0")], true, None).await
    }

    /// Starts a kernel with extra environment variables and connects all channels; returns once
    /// iopub is subscribed.
    pub async fn start_with_env(env: &[(&str, &str)]) -> TestKernel {
        Self::launch(env, false, None).await
    }

    /// As [`TestKernel::start_with_env`], in another working directory (a notebook's folder).
    pub async fn start_in_dir_with_env(cwd: &std::path::Path, env: &[(&str, &str)]) -> TestKernel {
        Self::launch(env, false, Some(cwd)).await
    }

    /// Test kernels listen on IPC sockets in their own folder: TCP ports picked in advance can be
    /// taken by another test's socket before the kernel binds them (tests run in parallel).
    /// As [`TestKernel::start_with_env`], but started by a stand-in frontend (a shell that
    /// starts the kernel and lives on): `process` is that frontend, so a test can end it.
    pub async fn start_through_frontend(env: &[(&str, &str)]) -> TestKernel {
        Self::launch_with(env, false, None, true, None).await
    }

    /// As [`TestKernel::start_with_env`], with the kernel's log (its stderr) written to `log`.
    pub async fn start_with_log(env: &[(&str, &str)], log: &std::path::Path) -> TestKernel {
        Self::launch_with(env, false, None, false, Some(log)).await
    }

    async fn launch(env: &[(&str, &str)], own_group: bool, cwd: Option<&std::path::Path>) -> TestKernel {
        Self::launch_with(env, own_group, cwd, false, None).await
    }

    async fn launch_with(
        env: &[(&str, &str)],
        own_group: bool,
        cwd: Option<&std::path::Path>,
        through_shell: bool,
        log: Option<&std::path::Path>,
    ) -> TestKernel {
        let dir = temp_dir();
        let key = uuid::Uuid::new_v4().to_string();
        let base = dir.join("kernel");
        let path = dir.join("connection.json");
        let info = json!({
            "transport": "ipc", "ip": base.to_str().unwrap(), "key": key, "signature_scheme": "hmac-sha256",
            "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
            "kernel_name": "torchbook"
        });
        std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
        let endpoint_base = format!("ipc://{}-", base.display());
        let mut command = if through_shell {
            let mut shell = Command::new("sh");
            // The frontend outlives its kernel, as a Jupyter server or Zeppelin's bridge does.
            shell.args(["-c", "\"$0\" \"$@\" & exec sleep 3600"]).arg(binary());
            shell
        } else {
            Command::new(binary())
        };
        // No spare engines unless a test asks for them: they would outlive the test.
        command
            .args(["kernel", "--connection-file"])
            .arg(&path)
            .env("TORCHBOOK_SPARE_ENGINE", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log).expect("create the kernel's log"));
        }
        if own_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let mut process = command.spawn().expect("start torchbook");
        let endpoint = |channel: u16| format!("{endpoint_base}{channel}");
        let identity = uuid::Uuid::new_v4().simple().to_string();
        let with_identity = || {
            let mut options = SocketOptions::default();
            options.peer_identity(PeerIdentity::try_from(identity.as_bytes().to_vec()).unwrap());
            DealerSocket::with_options(options)
        };
        let mut shell = with_identity();
        let mut stdin = with_identity();
        let mut control = DealerSocket::new();
        let mut iopub = SubSocket::new();
        let mut heartbeat = ReqSocket::new();
        // The kernel may still be binding: retry connects for a while.
        for _ in 0..200 {
            if shell.connect(&endpoint(1)).await.is_ok() {
                break;
            }
            assert!(process.try_wait().unwrap().is_none(), "the kernel exited at start (see its stderr above)");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        control.connect(&endpoint(4)).await.unwrap();
        stdin.connect(&endpoint(3)).await.unwrap();
        iopub.connect(&endpoint(2)).await.unwrap();
        iopub.subscribe("").await.unwrap();
        heartbeat.connect(&endpoint(5)).await.unwrap();
        let mut kernel = TestKernel {
            process,
            signer: Signer::new(&key),
            key,
            shell,
            stdin,
            control,
            iopub,
            heartbeat,
            endpoint_base,
            session: uuid::Uuid::new_v4().to_string(),
            dir,
        };
        let welcome = kernel.next_iopub().await;
        assert_eq!(welcome.header.msg_type, "iopub_welcome");
        kernel
    }

    /// `ipc://<folder>/kernel-`: the channels' endpoints are this and their port numbers.
    pub fn endpoint_base(&self) -> &str {
        &self.endpoint_base
    }

    /// The kernel's iopub endpoint, for a second subscriber.
    pub fn iopub_endpoint(&self) -> String {
        format!("{}2", self.endpoint_base)
    }

    pub fn message(&self, msg_type: &str, content: Value) -> Message {
        let content = Content::from_parts(msg_type, content).expect("valid test content");
        Message::new(content, None, &self.session)
    }

    pub fn frames(&self, message: Message) -> Vec<Bytes> {
        encode_with_key(message, &self.key)
    }

    /// Sends a request on shell and returns its msg_id.
    pub async fn send_shell(&mut self, msg_type: &str, content: Value) -> String {
        let message = self.message(msg_type, content);
        let id = message.header.msg_id.clone();
        let frames = self.frames(message);
        self.shell.send(ZmqMessage::try_from(frames).unwrap()).await.unwrap();
        id
    }

    pub async fn send_control(&mut self, msg_type: &str, content: Value) -> String {
        let message = self.message(msg_type, content);
        let id = message.header.msg_id.clone();
        let frames = self.frames(message);
        self.control.send(ZmqMessage::try_from(frames).unwrap()).await.unwrap();
        id
    }

    pub async fn send_raw_shell(&mut self, frames: Vec<Bytes>) {
        self.shell.send(ZmqMessage::try_from(frames).unwrap()).await.unwrap();
    }

    fn decode(&self, frames: ZmqMessage) -> Message {
        // The client verifies with a fresh replay window: iopub and shell share none here.
        let mut verifier = Signer::new(&self.key);
        WireMessage::decode(frames.into_vec(), &mut verifier)
            .expect("kernel sends well-formed, signed messages")
            .message
    }

    pub async fn shell_reply(&mut self) -> Message {
        let frames = timed("a shell reply", self.shell.recv()).await.unwrap();
        self.decode(frames)
    }

    /// The next message the kernel sends on stdin (an `input_request`).
    pub async fn stdin_request(&mut self) -> Message {
        let frames = timed("an input_request", self.stdin.recv()).await.unwrap();
        self.decode(frames)
    }

    pub async fn send_stdin(&mut self, msg_type: &str, content: Value) {
        let message = self.message(msg_type, content);
        let frames = self.frames(message);
        self.stdin.send(ZmqMessage::try_from(frames).unwrap()).await.unwrap();
    }

    pub async fn control_reply(&mut self) -> Message {
        let frames = timed("a control reply", self.control.recv()).await.unwrap();
        self.decode(frames)
    }

    pub async fn next_iopub(&mut self) -> Message {
        let frames = timed("an iopub message", self.iopub.recv()).await.unwrap();
        self.decode(frames)
    }

    /// Collects the iopub messages parented to `msg_id` up to and including its `idle`.
    pub async fn iopub_until_idle(&mut self, msg_id: &str) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let message = self.next_iopub().await;
            let mine = message
                .parent_header
                .as_ref()
                .is_some_and(|p| p.msg_id == msg_id);
            if !mine {
                continue;
            }
            let idle = message.header.msg_type == "status"
                && message.content.to_value()["execution_state"] == "idle";
            seen.push(message);
            if idle {
                return seen;
            }
        }
    }

    /// Like [`TestKernel::iopub_until_idle`], with the moment each message arrived.
    pub async fn iopub_until_idle_timed(&mut self, msg_id: &str) -> Vec<(Message, std::time::Instant)> {
        let mut seen = Vec::new();
        loop {
            let message = self.next_iopub().await;
            let arrived = std::time::Instant::now();
            if message.parent_header.as_ref().is_none_or(|p| p.msg_id != msg_id) {
                continue;
            }
            let idle = message.header.msg_type == "status"
                && message.content.to_value()["execution_state"] == "idle";
            seen.push((message, arrived));
            if idle {
                return seen;
            }
        }
    }

    /// Runs a cell: returns its execute_reply content and its iopub messages.
    pub async fn execute(&mut self, code: &str) -> (Value, Vec<Message>) {
        let id = self
            .send_shell("execute_request", json!({"code": code, "silent": false}))
            .await;
        let reply = self.shell_reply().await;
        assert_eq!(reply.parent_header.as_ref().unwrap().msg_id, id);
        let messages = self.iopub_until_idle(&id).await;
        (reply.content.to_value(), messages)
    }

    /// Drops this client's shell, stdin and iopub sockets and connects new ones under a new
    /// identity, as a frontend does after losing its connection (a closed laptop, a restarted
    /// Jupyter server). Returns once the new iopub subscription is in place.
    pub async fn reconnect(&mut self) {
        let identity = uuid::Uuid::new_v4().simple().to_string();
        let with_identity = || {
            let mut options = SocketOptions::default();
            options.peer_identity(PeerIdentity::try_from(identity.as_bytes().to_vec()).unwrap());
            DealerSocket::with_options(options)
        };
        let endpoint = |channel: u16| format!("{}{channel}", self.endpoint_base);
        let (mut shell, mut stdin, mut iopub) = (with_identity(), with_identity(), SubSocket::new());
        shell.connect(&endpoint(1)).await.unwrap();
        stdin.connect(&endpoint(3)).await.unwrap();
        iopub.connect(&endpoint(2)).await.unwrap();
        iopub.subscribe("").await.unwrap();
        // The old sockets close here.
        self.shell = shell;
        self.stdin = stdin;
        self.iopub = iopub;
        let welcome = self.next_iopub().await;
        assert_eq!(welcome.header.msg_type, "iopub_welcome", "the new subscription is welcomed");
    }

    pub async fn ping(&mut self, payload: &[u8]) -> Vec<u8> {
        let ping = ZmqMessage::from(Bytes::copy_from_slice(payload));
        self.heartbeat.send(ping).await.unwrap();
        let pong = timed("a heartbeat", self.heartbeat.recv()).await.unwrap();
        pong.into_vec().concat()
    }

    /// True when the process has exited within `wait`.
    pub fn exited_within(&mut self, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for TestKernel {
    fn drop(&mut self) {
        // SIGTERM first, so the kernel removes its evcxr work folder; SIGKILL if it lingers.
        let pid = self.process.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        if !self.exited_within(Duration::from_secs(5)) {
            let _ = self.process.kill();
        }
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Encodes and signs a message with any key (a wrong one, to forge).
pub fn encode_with_key(message: Message, key: &str) -> Vec<Bytes> {
    WireMessage {
        identities: vec![],
        message,
    }
    .encode(&Signer::new(key))
}

/// The text of all `stream` messages of one name, joined.
pub fn stream_text(messages: &[Message], name: &str) -> String {
    messages
        .iter()
        .filter(|m| m.header.msg_type == "stream")
        .map(|m| m.content.to_value())
        .filter(|c| c["name"] == name)
        .map(|c| c["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The msg_types of a list of messages, in order.
/// The `text/plain` of the cell's execute_result ("" when there is none).
pub fn result_text(messages: &[Message]) -> String {
    messages
        .iter()
        .find(|m| m.header.msg_type == "execute_result")
        .map(|m| m.content.to_value()["data"]["text/plain"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

pub fn types(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.header.msg_type.clone()).collect()
}

/// Declares an async test with a multi-thread runtime.
#[macro_export]
macro_rules! kernel_test {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on($body);
        }
    };
}
