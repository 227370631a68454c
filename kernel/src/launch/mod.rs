//! `torchbook launch`: the kernel started by Jupyter Enterprise Gateway, speaking EG's
//! kernel-launcher contract as its own launchers do (`launch_ipykernel.py`): choose five kernel
//! ports and a communication port inside `--port-range`, write a connection file with a fresh
//! signing key, bind the kernel's sockets, send the connection info (with `pid`, `pgid`,
//! `comm_port`, `kernel_id`) encrypted to `--response-address` ([`crypto`]), then run the kernel
//! in this process while [`comm_port`] turns EG's requests into interrupts and stops.
//!
//! The kernel runs in-process, not as a child: the `pid` EG is given is the kernel's own, so its
//! fallbacks (SIGTERM or SIGKILL to that pid, SIGINT to its group) reach the kernel directly, an
//! interrupt from the communication port takes the same path as `interrupt_request`
//! (`WorkerHandle::interrupt`), and there is no second process to forward signals to or to
//! leave behind. See docs/ARCHITECTURE.md, "Enterprise Gateway launcher".

pub mod comm_port;
pub mod crypto;

use crate::kernel::engine::EngineFolder;
use crate::kernel::server::{self, ServeOptions, Signals};
use crate::kernel::transport::{self, Sockets};
use crate::protocol::connection::{ConnectionError, ConnectionInfo};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Why the launcher could not start the kernel. Each is one line for EG's kernel log.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0} is required (Enterprise Gateway passes it as {1})")]
    Missing(&'static str, &'static str),
    #[error("--response-address {0:?} is not HOST:PORT")]
    ResponseAddress(String),
    #[error("--port-range {range:?}: {reason}")]
    PortRange { range: String, reason: String },
    #[error(transparent)]
    Key(#[from] crypto::KeyError),
    #[error("no free port in {lower}..{upper} for {ip} after {tries} tries (MAX_PORT_RANGE_RETRIES)")]
    NoPort { lower: u16, upper: u16, ip: String, tries: u32 },
    #[error("cannot write the connection file {path}: {source}")]
    ConnectionFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Bind(#[from] transport::BindError),
    #[error("cannot listen on the communication port: {0}")]
    CommPort(std::io::Error),
    #[error("cannot send the connection info to Enterprise Gateway at {address}: {reason}")]
    Respond { address: String, reason: String },
}

/// The launcher's arguments as given, on the command line or in the environment.
#[derive(Debug, Clone, Default)]
pub struct LaunchArgs {
    pub kernel_id: Option<String>,
    pub response_address: Option<String>,
    pub public_key: Option<String>,
    pub port_range: Option<String>,
    /// The address the kernel binds; EG's launchers bind every interface.
    pub ip: String,
    /// EG's Spark option: only `none` means anything for this kernel.
    pub spark_context_initialization_mode: Option<String>,
}

/// The environment variables EG's container images and `bootstrap-kernel.sh` use, in the order
/// they are tried, for arguments not given on the command line.
pub const ENV_FALLBACKS: [(&str, &[&str]); 4] = [
    ("kernel_id", &["KERNEL_ID"]),
    ("response_address", &["RESPONSE_ADDRESS", "EG_RESPONSE_ADDRESS"]),
    ("public_key", &["PUBLIC_KEY", "EG_PUBLIC_KEY"]),
    ("port_range", &["PORT_RANGE", "EG_PORT_RANGE"]),
];

/// Ports the kernel may use: `L..U`, or any (`0..0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lower: u16,
    pub upper: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lower: 0, upper: 0 };

    /// Parses `L..U` as EG's launchers do: a range must span at least `min_size` ports
    /// (`MIN_PORT_RANGE_SIZE`, 1000 by default) unless it is `0..0`.
    pub fn parse(text: &str, min_size: u32) -> Result<PortRange, LaunchError> {
        let bad = |reason: String| LaunchError::PortRange { range: text.to_owned(), reason };
        let (lower, upper) = text.trim().split_once("..").ok_or_else(|| bad("expected LOWER..UPPER".into()))?;
        let port = |s: &str| s.trim().parse::<u16>().map_err(|e| bad(format!("{s:?} is not a port number: {e}")));
        let range = PortRange { lower: port(lower)?, upper: port(upper)? };
        if range.upper < range.lower {
            return Err(bad("the upper port is below the lower one".into()));
        }
        let size = u32::from(range.upper - range.lower);
        if size != 0 && size < min_size {
            return Err(bad(format!("a range must span at least {min_size} ports (MIN_PORT_RANGE_SIZE)")));
        }
        Ok(range)
    }

    fn candidate(&self) -> u16 {
        if self.upper == self.lower {
            0
        } else {
            rand::Rng::gen_range(&mut rand::rngs::OsRng, self.lower..=self.upper)
        }
    }
}

/// What the launcher runs with, checked.
#[derive(Debug)]
pub struct LaunchConfig {
    pub kernel_id: String,
    pub response_address: (String, u16),
    pub public_key: crypto::PublicKey,
    pub ports: PortRange,
    pub ip: String,
    /// `MAX_PORT_RANGE_RETRIES`: further random tries per port when one is taken.
    pub retries: u32,
}

/// An argument EG did not fill in (a `{placeholder}` left as it is) counts as missing.
fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty() && !(v.starts_with('{') && v.ends_with('}')))
}

impl LaunchArgs {
    /// Fills what the command line lacks from the environment (`env`), then checks everything,
    /// the public key included, so a bad argument ends the launcher before anything starts.
    pub fn resolve(mut self, env: impl Fn(&str) -> Option<String>) -> Result<LaunchConfig, LaunchError> {
        for (field, names) in ENV_FALLBACKS {
            let slot = match field {
                "kernel_id" => &mut self.kernel_id,
                "response_address" => &mut self.response_address,
                "public_key" => &mut self.public_key,
                _ => &mut self.port_range,
            };
            if given(slot.clone()).is_none() {
                *slot = names.iter().find_map(|name| given(env(name)));
            }
        }
        let number = |names: &[&str], default: u32| names.iter().find_map(|n| env(n)?.trim().parse().ok()).unwrap_or(default);
        let min_size = number(&["MIN_PORT_RANGE_SIZE", "EG_MIN_PORT_RANGE_SIZE"], 1000);
        let retries = number(&["MAX_PORT_RANGE_RETRIES", "EG_MAX_PORT_RANGE_RETRIES"], 5);

        let kernel_id = given(self.kernel_id).ok_or(LaunchError::Missing("--kernel-id", "{kernel_id}"))?;
        let address = given(self.response_address).ok_or(LaunchError::Missing("--response-address", "{response_address}"))?;
        let public_key = given(self.public_key).ok_or(LaunchError::Missing("--public-key", "{public_key}"))?;
        let public_key = crypto::PublicKey::parse(&public_key)?;
        let ports = match given(self.port_range) {
            Some(range) => PortRange::parse(&range, min_size)?,
            None => PortRange::ANY,
        };
        if let Some(mode) = given(self.spark_context_initialization_mode).filter(|m| m != "none") {
            eprintln!(
                "torchbook launch: --spark-context-initialization-mode {mode:?} ignored (this kernel has no Spark context)"
            );
        }
        Ok(LaunchConfig {
            kernel_id,
            response_address: parse_address(&address)?,
            public_key,
            ports,
            ip: if self.ip.is_empty() { "0.0.0.0".into() } else { self.ip },
            retries,
        })
    }
}

/// `host:port`, `ip:port` or `[v6]:port`.
fn parse_address(text: &str) -> Result<(String, u16), LaunchError> {
    let bad = || LaunchError::ResponseAddress(text.to_owned());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Gives the process a `HOME` when it was started without one: Enterprise Gateway passes a
/// kernel only the variables it was told to (`EG_INHERITED_ENVS`, `KERNEL_*`) and the
/// kernelspec's `env`, and rustup's `cargo` and the prelude cache need a home. The user's own
/// home, from the password database, as a login would set it. Call before any thread starts.
pub fn prepare_environment() {
    if std::env::var_os("HOME").is_some() {
        return;
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the string out at
    // once, and no other thread runs yet.
    let home = unsafe {
        let entry = libc::getpwuid(libc::getuid());
        if entry.is_null() || (*entry).pw_dir.is_null() {
            return;
        }
        std::ffi::CStr::from_ptr((*entry).pw_dir).to_string_lossy().into_owned()
    };
    std::env::set_var("HOME", home);
}

/// Takes `count` distinct free ports in `range`, held open so none is taken twice; each port
/// gets up to `retries + 1` random candidates, as in EG's `_select_socket`.
fn reserve_ports(count: usize, config: &LaunchConfig) -> Result<Vec<TcpListener>, LaunchError> {
    let mut taken = Vec::with_capacity(count);
    for _ in 0..count {
        let mut tries = 0;
        let listener = loop {
            tries += 1;
            if let Ok(listener) = TcpListener::bind((config.ip.as_str(), config.ports.candidate())) {
                break listener;
            }
            if tries > config.retries {
                let PortRange { lower, upper } = config.ports;
                return Err(LaunchError::NoPort { lower, upper, ip: config.ip.clone(), tries });
            }
        };
        taken.push(listener);
    }
    Ok(taken)
}

fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// Writes the connection file (owner-only, a new file) and returns its path and contents.
fn write_connection_file(config: &LaunchConfig, ports: [u16; 5]) -> Result<(PathBuf, serde_json::Value), LaunchError> {
    let [shell, iopub, stdin, hb, control] = ports;
    let info = serde_json::json!({
        "shell_port": shell,
        "iopub_port": iopub,
        "stdin_port": stdin,
        "hb_port": hb,
        "control_port": control,
        "ip": config.ip,
        // A fresh signing key for this kernel, as EG's launchers make one (uuid4).
        "key": uuid::Uuid::new_v4().to_string(),
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "kernel_name": "",
    });
    let safe_id: String = config
        .kernel_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    let path = std::env::temp_dir().join(format!("kernel-{safe_id}-{}.json", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let written = {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(&serde_json::to_vec_pretty(&info).expect("JSON serialises")))
    };
    written.map_err(|source| LaunchError::ConnectionFile { path: path.clone(), source })?;
    Ok((path, info))
}

/// Removes the connection file when the launcher ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How often binding the kernel's sockets is tried, with fresh ports each time: another
/// process may take a port between its reservation and the kernel's bind.
const BIND_ATTEMPTS: u32 = 3;
/// How long reaching Enterprise Gateway's response address may take.
const RESPOND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the encrypted connection info and closes the connection (EG reads to the end).
async fn respond(config: &LaunchConfig, payload: &[u8]) -> Result<(), LaunchError> {
    let (host, port) = &config.response_address;
    let fail = |reason: String| LaunchError::Respond { address: format!("{host}:{port}"), reason };
    let send = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
        stream.write_all(payload).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(RESPOND_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no connection within {RESPOND_TIMEOUT:?}"))),
    }
}

/// Runs the kernel for Enterprise Gateway until EG (or a Jupyter client) stops it.
pub async fn run(
    config: LaunchConfig,
    engine_folder: EngineFolder,
    rank_folders: crate::kernel::ranks::RankFolders,
) -> Result<(), LaunchError> {
    let signals = Signals::install();
    let mut attempt = 0;
    let (file, written, info, sockets, comm) = loop {
        attempt += 1;
        let mut reserved = reserve_ports(6, &config)?;
        let comm = reserved.pop().expect("six reserved");
        let ports: Vec<u16> = reserved.iter().map(port_of).collect();
        let (path, written) = write_connection_file(&config, ports.try_into().expect("five ports"))?;
        let file = RemoveOnDrop(path);
        // The kernel reads its connection file exactly as `torchbook kernel -f` does.
        let info = ConnectionInfo::from_file(&file.0)?;
        // Released just before the kernel binds them.
        drop(reserved);
        match Sockets::bind(&info).await {
            Ok(sockets) => break (file, written, info, sockets, comm),
            Err(e) if attempt < BIND_ATTEMPTS => eprintln!("torchbook launch: {e}; trying other ports"),
            Err(e) => return Err(e.into()),
        }
    };
    comm.set_nonblocking(true).map_err(LaunchError::CommPort)?;
    let comm_port = port_of(&comm);
    let comm = tokio::net::TcpListener::from_std(comm).map_err(LaunchError::CommPort)?;

    let mut reply = written;
    // SAFETY: getpid and getpgid(0) have no preconditions.
    let (pid, pgid) = unsafe { (libc::getpid(), libc::getpgid(0)) };
    reply["pid"] = pid.into();
    reply["pgid"] = pgid.into();
    reply["comm_port"] = comm_port.into();
    reply["kernel_id"] = config.kernel_id.clone().into();
    let payload = crypto::encrypt_payload(&reply, &config.public_key)?;
    respond(&config, &payload).await?;
    eprintln!(
        "torchbook launch: kernel {} on {} (ports {}, {}, {}, {}, {}; communication port {comm_port}); \
         connection info sent to {}:{}",
        config.kernel_id, info.ip, info.shell_port, info.iopub_port, info.stdin_port, info.hb_port, info.control_port,
        config.response_address.0, config.response_address.1,
    );

    let (requests, external) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(comm_port::serve(comm, requests));
    let options = ServeOptions { watch_parent: false, external: Some(external), rank_folders: Some(rank_folders) };
    server::serve_bound(info, sockets, engine_folder, signals, options).await;
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    fn public_key() -> String {
        use base64::Engine as _;
        use rsa::pkcs8::EncodePublicKey;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        base64::engine::general_purpose::STANDARD.encode(private.to_public_key().to_public_key_der().unwrap().as_bytes())
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse("0..0", 1000).unwrap(), PortRange::ANY);
        assert_eq!(PortRange::parse("40000..41000", 1000).unwrap(), PortRange { lower: 40000, upper: 41000 });
        for bad in ["40000..40999", "41000..40000", "x..1", "1000", "1..70000", ""] {
            assert!(PortRange::parse(bad, 1000).is_err(), "{bad}");
        }
        assert!(PortRange::parse("40000..40010", 10).is_ok());
        let range = PortRange { lower: 40000, upper: 41000 };
        assert!((0..200).map(|_| range.candidate()).all(|p| (40000..=41000).contains(&p)));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("10.0.0.5:8877").unwrap(), ("10.0.0.5".into(), 8877));
        assert_eq!(parse_address("eg.example.com:8877").unwrap(), ("eg.example.com".into(), 8877));
        assert_eq!(parse_address("[::1]:8877").unwrap(), ("::1".into(), 8877));
        for bad in ["8877", "host:", ":8877", "host:port", "host:0"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_come_from_the_command_line_then_the_environment() {
        let key = public_key();
        let args = LaunchArgs {
            kernel_id: Some("abc".into()),
            response_address: Some("{response_address}".into()),
            public_key: Some(key.clone()),
            port_range: None,
            ..Default::default()
        };
        let config = args
            .resolve(env_of(&[("EG_RESPONSE_ADDRESS", "127.0.0.1:9"), ("PORT_RANGE", "50000..51000"), ("KERNEL_ID", "other")]))
            .unwrap();
        assert_eq!(config.kernel_id, "abc");
        assert_eq!(config.response_address, ("127.0.0.1".into(), 9));
        assert_eq!(config.ports, PortRange { lower: 50000, upper: 51000 });
        assert_eq!(config.ip, "0.0.0.0");
        assert_eq!(config.retries, 5);

        let missing = LaunchArgs { public_key: Some(key), ..Default::default() }.resolve(env_of(&[])).unwrap_err();
        assert!(missing.to_string().contains("--kernel-id is required"), "{missing}");
    }

    #[test]
    fn a_bad_public_key_is_an_error_before_anything_starts() {
        let args = LaunchArgs {
            kernel_id: Some("k".into()),
            response_address: Some("127.0.0.1:9".into()),
            public_key: Some("bm90IGEga2V5".into()),
            ..Default::default()
        };
        let error = args.resolve(env_of(&[])).unwrap_err();
        assert!(matches!(error, LaunchError::Key(_)), "{error}");
    }

    #[test]
    fn reserved_ports_are_distinct_and_in_range() {
        let config = LaunchConfig {
            kernel_id: "k".into(),
            response_address: ("127.0.0.1".into(), 9),
            public_key: crypto::PublicKey::parse(&public_key()).unwrap(),
            ports: PortRange { lower: 42000, upper: 43000 },
            ip: "127.0.0.1".into(),
            retries: 20,
        };
        let taken = reserve_ports(6, &config).unwrap();
        let mut ports: Vec<u16> = taken.iter().map(port_of).collect();
        assert!(ports.iter().all(|p| (42000..=43000).contains(p)), "{ports:?}");
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
