//! Starting the binary: the CLI, bad connection files and ports in use end with one clear line.

mod support;

use std::process::Command;
use support::{binary, connection_file, temp_dir};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failed start: exit 1, one line on stderr that mentions `needle`, no backtrace.
fn assert_clear_failure(args: &[&str], needle: &str) {
    let (code, _, stderr) = run(args);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn version() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), format!("torchbook {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn missing_connection_file() {
    assert_clear_failure(&["kernel", "--connection-file", "/nonexistent/c.json"], "/nonexistent/c.json");
}

#[test]
fn broken_connection_file() {
    let dir = temp_dir();
    let path = dir.join("broken.json");
    std::fs::write(&path, "{\"transport\": \"tcp\", ").unwrap();
    assert_clear_failure(&["kernel", "-f", path.to_str().unwrap()], "not valid JSON");
}

#[test]
fn unknown_signature_scheme() {
    let dir = temp_dir();
    let (path, _) = connection_file(&dir, "k");
    let text = std::fs::read_to_string(&path).unwrap().replace("hmac-sha256", "hmac-md5");
    std::fs::write(&path, text).unwrap();
    assert_clear_failure(&["kernel", "-f", path.to_str().unwrap()], "hmac-md5");
}

#[test]
fn port_in_use() {
    let dir = temp_dir();
    let (path, ports) = connection_file(&dir, "k");
    let _holder = std::net::TcpListener::bind(("127.0.0.1", ports.shell)).unwrap();
    assert_clear_failure(&["kernel", "-f", path.to_str().unwrap()], &ports.shell.to_string());
}

#[test]
fn install_writes_and_replaces_kernelspec() {
    let prefix = temp_dir();
    let p = prefix.to_str().unwrap();
    let (code, stdout, stderr) = run(&["install", "--prefix", p, "--name", "tb-test"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("tb-test"), "{stdout}");
    assert!(stdout.contains(binary().to_str().unwrap()), "{stdout}");
    let dir = prefix.join("share/jupyter/kernels/tb-test");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kernel.json")).unwrap()).unwrap();
    assert_eq!(spec["display_name"], "Rust (torchbook)");
    assert_eq!(spec["language"], "rust");
    assert_eq!(spec["argv"][1], "kernel");
    for logo in ["logo-32x32.png", "logo-64x64.png", "logo-svg.svg"] {
        assert!(dir.join(logo).exists(), "{logo}");
    }
    let (code, _, _) = run(&["install", "--prefix", p, "--name", "tb-test", "--display-name", "Other"]);
    assert_eq!(code, 0);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kernel.json")).unwrap()).unwrap();
    assert_eq!(spec["display_name"], "Other");
    std::fs::remove_dir_all(prefix).unwrap();
}

#[test]
fn exits_when_its_parent_is_gone() {
    let dir = temp_dir();
    let (path, _) = connection_file(&dir, "k");
    let mut parent = Command::new("sleep").arg("0.5").spawn().unwrap();
    let mut kernel = Command::new(binary())
        .args(["kernel", "-f", path.to_str().unwrap()])
        .env("TORCHBOOK_SPARE_ENGINE", "0")
        .env("JPY_PARENT_PID", parent.id().to_string())
        .spawn()
        .unwrap();
    parent.wait().unwrap(); // reaped: the pid no longer exists
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut exited = false;
    while std::time::Instant::now() < deadline {
        if kernel.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !exited {
        kernel.kill().unwrap();
    }
    assert!(exited, "kernel outlived JPY_PARENT_PID");
}

#[test]
fn ipc_transport_serves_kernel_info() {
    use serde_json::json;
    use torchbook_kernel::protocol::{Content, Message, Signer, WireMessage};
    use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

    let dir = temp_dir();
    let base = dir.join("kernel");
    let info = json!({
        "transport": "ipc", "ip": base.to_str().unwrap(), "key": "", "signature_scheme": "hmac-sha256",
        "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5
    });
    let path = dir.join("ipc.json");
    std::fs::write(&path, info.to_string()).unwrap();
    let mut kernel = Command::new(binary())
        .args(["kernel", "-f", path.to_str().unwrap()])
        .env("TORCHBOOK_SPARE_ENGINE", "0")
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply = runtime.block_on(async {
        let mut shell = DealerSocket::new();
        let endpoint = format!("ipc://{}-1", base.display());
        for _ in 0..100 {
            if std::path::Path::new(&format!("{}-1", base.display())).exists()
                && shell.connect(&endpoint).await.is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let request = Message::new(
            Content::from_parts("kernel_info_request", json!({})).unwrap(),
            None,
            "s",
        );
        let frames = WireMessage { identities: vec![], message: request }.encode(&Signer::new(""));
        shell.send(ZmqMessage::try_from(frames).unwrap()).await.unwrap();
        let answer = tokio::time::timeout(support::TIMEOUT, shell.recv()).await.unwrap().unwrap();
        WireMessage::decode(answer.into_vec(), &mut Signer::new("")).unwrap().message
    });
    Command::new("kill").args(["-TERM", &kernel.id().to_string()]).status().unwrap();
    let status = kernel.wait().unwrap();
    assert_eq!(reply.header.msg_type, "kernel_info_reply");
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
}
