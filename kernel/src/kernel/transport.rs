//! ZeroMQ sockets for the five channels, and nothing about what messages mean: binding, the
//! heartbeat echo, the iopub publisher with its welcome message, and signed send/receive on the
//! ROUTER channels. A frame that cannot be decoded is logged and dropped; the channel carries on.

use crate::protocol::connection::{Channel, ConnectionInfo};
use crate::protocol::messages::{IopubWelcome, Message};
use crate::protocol::{Content, Header, Signer, WireMessage};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use zeromq::{
    RepSocket, RouterRecvHalf, RouterSendHalf, RouterSocket, Socket, SocketRecv, SocketSend,
    XPubSocket, ZmqMessage,
};

/// Why the kernel could not open its channels.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the {channel} channel to {endpoint}: {source}")]
pub struct BindError {
    channel: &'static str,
    endpoint: String,
    source: zeromq::ZmqError,
}

async fn bind<S: Socket>(
    socket: &mut S,
    info: &ConnectionInfo,
    channel: Channel,
    name: &'static str,
) -> Result<(), BindError> {
    let endpoint = info.endpoint(channel);
    socket
        .bind(&endpoint)
        .await
        .map_err(|source| BindError {
            channel: name,
            endpoint: endpoint.clone(),
            source,
        })?;
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        owner_only(std::path::Path::new(path));
    }
    Ok(())
}

/// An IPC socket is a file anyone who can reach it may connect to; the signing key still
/// guards every message, but only the kernel's user should get as far as sending one
/// (docs/SECURITY.md). The socket is created with the process's umask, so it is narrowed
/// right after the bind.
fn owner_only(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        eprintln!("torchbook: cannot make the socket {} private to its user: {e}", path.display());
    }
}

fn to_frames(message: ZmqMessage) -> Vec<Bytes> {
    message.into_vec()
}

fn to_zmq(frames: Vec<Bytes>) -> ZmqMessage {
    ZmqMessage::try_from(frames).expect("an encoded message has frames")
}

/// The signer shared by every channel: one key, one replay window.
pub type SharedSigner = Arc<Mutex<Signer>>;

/// All bound sockets, before their tasks start.
pub struct Sockets {
    pub shell: RouterSocket,
    pub control: RouterSocket,
    pub stdin: RouterSocket,
    pub iopub: XPubSocket,
    pub heartbeat: RepSocket,
}

impl Sockets {
    pub async fn bind(info: &ConnectionInfo) -> Result<Sockets, BindError> {
        let mut sockets = Sockets {
            shell: RouterSocket::new(),
            control: RouterSocket::new(),
            stdin: RouterSocket::new(),
            iopub: XPubSocket::new(),
            heartbeat: RepSocket::new(),
        };
        bind(&mut sockets.heartbeat, info, Channel::Heartbeat, "heartbeat").await?;
        bind(&mut sockets.iopub, info, Channel::Iopub, "iopub").await?;
        bind(&mut sockets.control, info, Channel::Control, "control").await?;
        bind(&mut sockets.stdin, info, Channel::Stdin, "stdin").await?;
        bind(&mut sockets.shell, info, Channel::Shell, "shell").await?;
        Ok(sockets)
    }
}

/// Echoes every heartbeat byte-for-byte, on its own task so a busy kernel still looks alive.
pub async fn run_heartbeat(mut socket: RepSocket) {
    loop {
        match socket.recv().await {
            Ok(ping) => {
                if let Err(e) = socket.send(ping).await {
                    eprintln!("torchbook: heartbeat send failed: {e}");
                }
            }
            Err(e) => eprintln!("torchbook: heartbeat receive failed: {e}"),
        }
    }
}

enum IopubCommand {
    Publish(Message),
    Flush(oneshot::Sender<()>),
}

/// Publishes on iopub; cheap to clone. Messages go out in the order they were published.
#[derive(Clone)]
pub struct Iopub {
    sender: mpsc::UnboundedSender<IopubCommand>,
    session: String,
}

impl Iopub {
    /// Publishes `content` with `parent` as its parent header.
    pub fn publish(&self, content: Content, parent: Option<&Header>) {
        let message = Message::new(content, parent, &self.session);
        let _ = self.sender.send(IopubCommand::Publish(message));
    }

    /// Waits until everything published so far has been handed to the socket.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(IopubCommand::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Starts the iopub task: it sends published messages and greets each new subscriber with
/// `iopub_welcome` (protocol 5.5, JEP 65) so clients know their subscription is live.
pub fn start_iopub(mut socket: XPubSocket, signer: SharedSigner, session: String) -> Iopub {
    let (sender, mut commands) = mpsc::unbounded_channel();
    let welcome_session = session.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(IopubCommand::Publish(message)) => {
                        let topic = Bytes::from(message.header.msg_type.clone());
                        let wire = WireMessage { identities: vec![topic], message };
                        let frames = wire.encode(&signer.lock().expect("signer lock"));
                        if let Err(e) = socket.send(to_zmq(frames)).await {
                            eprintln!("torchbook: iopub send failed: {e}");
                        }
                    }
                    Some(IopubCommand::Flush(done)) => { let _ = done.send(()); }
                    None => return,
                },
                subscription = socket.recv() => {
                    let Ok(frame) = subscription else { continue };
                    let Some(data) = frame.get(0) else { continue };
                    if data.first() != Some(&1) {
                        continue;
                    }
                    let topic = String::from_utf8_lossy(&data[1..]).into_owned();
                    let welcome = Content::IopubWelcome(IopubWelcome { subscription: topic.clone() });
                    let message = Message::new(welcome, None, &welcome_session);
                    let wire = WireMessage { identities: vec![Bytes::from(topic)], message };
                    let frames = wire.encode(&signer.lock().expect("signer lock"));
                    if let Err(e) = socket.send(to_zmq(frames)).await {
                        eprintln!("torchbook: iopub welcome failed: {e}");
                    }
                }
            }
        }
    });
    Iopub { sender, session }
}

/// The receiving side of a ROUTER channel: yields only well-formed, correctly signed messages.
pub struct Incoming {
    socket: RouterRecvHalf,
    signer: SharedSigner,
    name: &'static str,
}

impl Incoming {
    /// The next valid message. Bad ones are logged to stderr and skipped.
    pub async fn next(&mut self) -> Option<WireMessage> {
        loop {
            let frames = match self.socket.recv().await {
                Ok(m) => to_frames(m),
                Err(zeromq::ZmqError::NoMessage) => return None,
                Err(e) => {
                    eprintln!("torchbook: {} receive failed: {e}", self.name);
                    continue;
                }
            };
            let decoded = WireMessage::decode(frames, &mut self.signer.lock().expect("signer"));
            match decoded {
                Ok(message) => return Some(message),
                Err(e) => eprintln!("torchbook: dropped a message on {}: {e}", self.name),
            }
        }
    }
}

/// The sending side of a ROUTER channel: replies go back to the identities of their request.
#[derive(Clone)]
pub struct Replier {
    socket: RouterSendHalf,
    signer: SharedSigner,
    session: String,
}

impl Replier {
    /// Sends `content` as the reply to `request`.
    pub async fn reply(&self, request: &WireMessage, content: Content) {
        let message = Message::new(content, Some(&request.message.header), &self.session);
        let wire = WireMessage {
            identities: request.identities.clone(),
            message,
        };
        let frames = wire.encode(&self.signer.lock().expect("signer lock"));
        if let Err(e) = self.socket.clone().send(to_zmq(frames)).await {
            eprintln!("torchbook: reply {} failed: {e}", wire.message.header.msg_type);
        }
    }
}

/// Splits a bound ROUTER socket into its receiving and replying halves.
pub fn router(
    socket: RouterSocket,
    signer: SharedSigner,
    session: &str,
    name: &'static str,
) -> (Incoming, Replier) {
    let (send, recv) = socket.split();
    (
        Incoming {
            socket: recv,
            signer: signer.clone(),
            name,
        },
        Replier {
            socket: send,
            signer,
            session: session.to_owned(),
        },
    )
}
