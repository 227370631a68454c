//! The launcher's communication port: Enterprise Gateway connects, writes one JSON object and
//! closes (`RemoteProcessProxy._send_listener_request`). `{"signum": 0}` is its liveness poll
//! (every few seconds; the accepted connection is the answer), `{"signum": 2}` an interrupt,
//! 9 and 15 stop the kernel, `{"shutdown": 1}` ends it cleanly. Anything else (garbage, other
//! JSON, a client that never finishes) is logged and ignored; the listener never stops on it.

use crate::kernel::server::External;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;

/// The most one request may be: EG's are about 20 bytes.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client may take to send its request and close.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request was ignored.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a JSON object with \"signum\" or \"shutdown\": {0}")]
    Shape(String),
    #[error("signal {0} is not one the launcher handles (0, 2, 9, 15)")]
    Signal(i64),
}

/// What one request asks for, in order.
pub fn parse_request(bytes: &[u8]) -> Result<Vec<External>, RequestError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| RequestError::Json(e.to_string()))?;
    let shape = || RequestError::Shape(abbreviate(&value.to_string()));
    let object = value.as_object().ok_or_else(shape)?;
    let mut actions = Vec::new();
    let mut understood = false;
    if let Some(signum) = object.get("signum") {
        // EG sends an integer; its own launcher reads it with int(), which takes "2" too.
        let number = match signum {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(shape)?;
        understood = true;
        match number {
            0 => {}
            2 => actions.push(External::Interrupt),
            9 => actions.push(External::Kill),
            15 => actions.push(External::Shutdown),
            other => return Err(RequestError::Signal(other)),
        }
    }
    if let Some(shutdown) = object.get("shutdown") {
        understood = true;
        let yes = match shutdown {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
            serde_json::Value::String(s) => !s.is_empty(),
            _ => false,
        };
        if yes {
            actions.push(External::Shutdown);
        }
    }
    if understood { Ok(actions) } else { Err(shape()) }
}

fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Serves the port until the kernel stops listening (`commands` closed), one task per
/// connection so a slow client cannot hold up the next request.
pub async fn serve(listener: TcpListener, commands: UnboundedSender<External>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                eprintln!("torchbook launch: communication port accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if commands.is_closed() {
            return;
        }
        let commands = commands.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let read = tokio::time::timeout(READ_TIMEOUT, (&mut stream).take(MAX_REQUEST + 1).read_to_end(&mut request)).await;
            match read {
                Err(_) => return eprintln!("torchbook launch: {peer} sent no complete request within {READ_TIMEOUT:?}; ignored"),
                Ok(Err(e)) => return eprintln!("torchbook launch: reading a request from {peer} failed: {e}; ignored"),
                Ok(Ok(_)) if request.len() as u64 > MAX_REQUEST => {
                    return eprintln!("torchbook launch: {peer} sent more than {MAX_REQUEST} bytes; ignored")
                }
                Ok(Ok(_)) => {}
            }
            if request.iter().all(u8::is_ascii_whitespace) {
                // A bare connect: a port scan or a liveness check of its own.
                return;
            }
            match parse_request(&request) {
                Ok(actions) => {
                    for action in actions {
                        eprintln!("torchbook launch: {action:?} requested by Enterprise Gateway ({peer})");
                        let _ = commands.send(action);
                    }
                }
                Err(e) => eprintln!("torchbook launch: ignored a request from {peer}: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_enterprise_gateway_sends() {
        assert_eq!(parse_request(br#"{"signum": 0}"#), Ok(vec![]));
        assert_eq!(parse_request(br#"{"signum": 2}"#), Ok(vec![External::Interrupt]));
        assert_eq!(parse_request(br#"{"signum": "2"}"#), Ok(vec![External::Interrupt]));
        assert_eq!(parse_request(br#"{"signum": 9}"#), Ok(vec![External::Kill]));
        assert_eq!(parse_request(br#"{"signum": 15}"#), Ok(vec![External::Shutdown]));
        assert_eq!(parse_request(br#"{"shutdown": 1}"#), Ok(vec![External::Shutdown]));
        assert_eq!(parse_request(br#"{"shutdown": 0}"#), Ok(vec![]));
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let bad_inputs = [&b""[..], b"garbage", b"\xff\xfe", b"[1,2]", b"{}", br#"{"signum": "x"}"#, br#"{"signum": 1e999}"#];
        for bad in bad_inputs.into_iter().chain([&b"{\"signum\": 2"[..]]) {
            assert!(parse_request(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_request(br#"{"signum": 12}"#), Err(RequestError::Signal(12)));
        let long = format!("{{\"other\": \"{}\"}}", "x".repeat(5000));
        let message = parse_request(long.as_bytes()).unwrap_err().to_string();
        assert!(message.len() < 400, "{message}");
    }
}
