//! The connection file a frontend writes for the kernel: transport, address, the five ports and the
//! signing key. Parsing and validation live here so that every problem becomes one clear line.

use serde::Deserialize;
use std::path::Path;

/// Why a connection file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot read connection file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("connection file {path} is not valid JSON for a kernel connection: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("connection file: unknown transport {0:?} (expected \"tcp\" or \"ipc\")")]
    Transport(String),
    #[error("connection file: unsupported signature_scheme {0:?} (expected \"hmac-sha256\")")]
    SignatureScheme(String),
    #[error("connection file: an empty signing key on {ip}, which is not a loopback address: anyone who can reach the ports could run code; give the kernel a key, bind 127.0.0.1, or pass --allow-unsigned-network")]
    UnsignedOnNetwork { ip: String },
}

/// The contents of a Jupyter connection file (see jupyter_client's kernels.rst).
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    pub transport: String,
    pub ip: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
    #[serde(default)]
    pub kernel_name: Option<String>,
}

fn default_scheme() -> String {
    "hmac-sha256".to_owned()
}

/// The five kernel channels, named as in the messaging spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
    Stdin,
    Iopub,
    Heartbeat,
}

impl ConnectionInfo {
    /// Reads and validates a connection file.
    pub fn from_file(path: &Path) -> Result<Self, ConnectionError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a connection file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConnectionError> {
        let info: ConnectionInfo =
            serde_json::from_str(text).map_err(|source| ConnectionError::Parse {
                path: path.to_owned(),
                source,
            })?;
        info.validate()?;
        Ok(info)
    }

    /// Refuses an empty key on a TCP address other than loopback (docs/SECURITY.md): messages
    /// are then unsigned, and the key is the only capability a kernel checks.
    pub fn refuse_unsigned_network(&self) -> Result<(), ConnectionError> {
        if self.key.is_empty() && self.transport == "tcp" && !is_loopback(&self.ip) {
            return Err(ConnectionError::UnsignedOnNetwork { ip: self.ip.clone() });
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConnectionError> {
        if self.transport != "tcp" && self.transport != "ipc" {
            return Err(ConnectionError::Transport(self.transport.clone()));
        }
        if self.signature_scheme != "hmac-sha256" {
            return Err(ConnectionError::SignatureScheme(
                self.signature_scheme.clone(),
            ));
        }
        Ok(())
    }

    /// The endpoint to bind for a channel: `tcp://ip:port`, or for ipc the path `ip-port` as
    /// jupyter_client spells it.
    pub fn endpoint(&self, channel: Channel) -> String {
        let port = match channel {
            Channel::Shell => self.shell_port,
            Channel::Control => self.control_port,
            Channel::Stdin => self.stdin_port,
            Channel::Iopub => self.iopub_port,
            Channel::Heartbeat => self.hb_port,
        };
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{}", self.ip, port),
            _ => format!("tcp://{}:{}", self.ip, port),
        }
    }
}

/// `localhost`, 127.0.0.0/8 and `::1`.
fn is_loopback(ip: &str) -> bool {
    ip == "localhost" || ip.parse::<std::net::IpAddr>().is_ok_and(|addr| addr.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConnectionInfo, ConnectionError> {
        let dir = std::env::temp_dir().join(format!("tb-conn-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, text).unwrap();
        let result = ConnectionInfo::from_file(&dir);
        std::fs::remove_file(&dir).ok();
        result
    }

    const GOOD: &str = r#"{"transport":"tcp","ip":"127.0.0.1","shell_port":1,"iopub_port":2,
        "stdin_port":3,"control_port":4,"hb_port":5,"key":"k","signature_scheme":"hmac-sha256"}"#;

    #[test]
    fn tcp_endpoints() {
        let info = parse(GOOD).unwrap();
        assert_eq!(info.endpoint(Channel::Shell), "tcp://127.0.0.1:1");
        assert_eq!(info.endpoint(Channel::Heartbeat), "tcp://127.0.0.1:5");
    }

    #[test]
    fn ipc_endpoints() {
        let info = parse(&GOOD.replace("\"tcp\"", "\"ipc\"").replace("127.0.0.1", "/tmp/k"))
            .unwrap();
        assert_eq!(info.endpoint(Channel::Iopub), "ipc:///tmp/k-2");
    }

    #[test]
    fn an_empty_key_is_refused_off_loopback_only() {
        let unsigned = GOOD.replace("\"key\":\"k\"", "\"key\":\"\"");
        assert!(parse(&unsigned).unwrap().refuse_unsigned_network().is_ok());
        let everywhere = parse(&unsigned.replace("127.0.0.1", "0.0.0.0")).unwrap();
        let err = everywhere.refuse_unsigned_network().unwrap_err();
        assert!(err.to_string().contains("0.0.0.0") && err.to_string().contains("--allow-unsigned-network"), "{err}");
        assert!(parse(&unsigned.replace("127.0.0.1", "::1")).unwrap().refuse_unsigned_network().is_ok());
        assert!(parse(&GOOD.replace("127.0.0.1", "10.1.2.3")).unwrap().refuse_unsigned_network().is_ok());
        let ipc = unsigned.replace("\"tcp\"", "\"ipc\"").replace("127.0.0.1", "/tmp/k");
        assert!(parse(&ipc).unwrap().refuse_unsigned_network().is_ok());
    }

    #[test]
    fn unknown_scheme_is_refused() {
        let err = parse(&GOOD.replace("hmac-sha256", "hmac-md5")).unwrap_err();
        assert!(err.to_string().contains("hmac-md5"), "{err}");
    }

    #[test]
    fn broken_file_says_what() {
        let err = parse("{\"transport\": ").unwrap_err();
        assert!(matches!(err, ConnectionError::Parse { .. }));
        let err = ConnectionInfo::from_file(Path::new("/nonexistent/conn.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/conn.json"));
    }
}
