//! What particular frontends do to a kernel: VS Code's kernel_info handshake, JupyterLab's
//! resource indicator (`usage_request`), `comm_info_request` on control, JEP 92's
//! `supported_features`.

mod support;

use serde_json::json;
use std::time::Duration;
use support::TestKernel;
use zeromq::SocketRecv;

/// Decodes a frame set the kernel sent (the helpers' decoder is private to them).
fn decode(k: &TestKernel, frames: zeromq::ZmqMessage) -> torchbook_kernel::protocol::Message {
    let mut verifier = torchbook_kernel::protocol::Signer::new(&k.key);
    torchbook_kernel::protocol::WireMessage::decode(frames.into_vec(), &mut verifier).unwrap().message
}

kernel_test!(vs_code_handshake_kernel_info_on_both_channels_until_answered, async {
    // VS Code sends kernel_info_request on control and on shell every 500 ms until one is
    // answered and an iopub message has arrived; every request must still get its one reply.
    let mut k = TestKernel::start().await;
    let (mut sent_shell, mut sent_control) = (Vec::new(), Vec::new());
    let (mut shell_replies, mut control_replies, mut iopub_seen) = (Vec::new(), Vec::new(), 0);
    for _round in 0..20 {
        sent_control.push(k.send_control("kernel_info_request", json!({})).await);
        sent_shell.push(k.send_shell("kernel_info_request", json!({})).await);
        let tick = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                frames = k.shell.recv() => { let m = decode(&k, frames.unwrap()); shell_replies.push(m); }
                frames = k.control.recv() => { let m = decode(&k, frames.unwrap()); control_replies.push(m); }
                frames = k.iopub.recv() => { frames.unwrap(); iopub_seen += 1; }
                _ = &mut tick => break,
            }
        }
        if (!shell_replies.is_empty() || !control_replies.is_empty()) && iopub_seen > 0 {
            break;
        }
    }
    assert!(sent_shell.len() < 20, "no reply and iopub message within 10 s");
    // Whatever is still in flight arrives too: one reply per request, on its own channel.
    while shell_replies.len() < sent_shell.len() {
        shell_replies.push(k.shell_reply().await);
    }
    while control_replies.len() < sent_control.len() {
        control_replies.push(k.control_reply().await);
    }
    for (replies, sent) in [(&shell_replies, &sent_shell), (&control_replies, &sent_control)] {
        let answered: Vec<&str> = replies.iter().map(|r| r.parent_header.as_ref().unwrap().msg_id.as_str()).collect();
        assert_eq!(answered, sent.iter().map(String::as_str).collect::<Vec<_>>());
        for reply in replies.iter() {
            let c = reply.content.to_value();
            assert_eq!((reply.header.msg_type.as_str(), c["status"].as_str()), ("kernel_info_reply", Some("ok")));
            assert_eq!(c["supported_features"], json!([]), "JEP 92: neither the debugger nor subshells");
        }
    }
    // And the session works as usual afterwards.
    let (reply, iopub) = k.execute("40 + 2").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(support::result_text(&iopub), "42");
});

kernel_test!(usage_request_sums_kernel_engine_and_worker, async {
    let mut k = TestKernel::start().await;
    k.execute("1").await; // the engine and its worker are up
    k.send_control("usage_request", json!({})).await;
    let first = k.control_reply().await;
    assert_eq!(first.header.msg_type, "usage_reply");
    let c = first.content.to_value();
    assert_eq!(c["pid"], k.process.id());
    assert!(!c["hostname"].as_str().unwrap().is_empty());
    assert_eq!(c["cpu_count"], std::thread::available_parallelism().unwrap().get());
    for field in ["total", "available", "percent", "used", "free"] {
        assert!(c["host_virtual_memory"][field].is_number(), "{field}: {c}");
    }
    // More than the kernel process alone: the engine (evcxr, rust-analyzer) and the worker.
    let kernel_alone = pss_bytes(k.process.id());
    assert!(c["kernel_memory"].as_u64().unwrap() > kernel_alone + (20 << 20), "{c} vs kernel alone {kernel_alone}");
    // A cell spinning in the worker shows as the kernel's CPU, measured between two requests.
    let id = k
        .send_shell(
            "execute_request",
            json!({"code": "let t = std::time::Instant::now(); let mut n = 0u64; while t.elapsed().as_millis() < 2500 { n = n.wrapping_add(1); } n > 0"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    k.send_control("usage_request", json!({})).await;
    let c = k.control_reply().await.content.to_value();
    assert!(c["kernel_cpu"].as_f64().unwrap() > 25.0, "a busy worker: {c}");
    assert!(c["host_cpu_percent"].as_f64().is_some_and(|p| p > 0.0 && p <= 100.0), "{c}");
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
});

kernel_test!(comm_info_is_answered_on_control_and_shell, async {
    let mut k = TestKernel::start().await;
    k.send_control("comm_info_request", json!({})).await;
    let reply = k.control_reply().await;
    assert_eq!(reply.header.msg_type, "comm_info_reply");
    assert_eq!(reply.content.to_value(), json!({"status": "ok", "comms": {}}));
    k.send_shell("comm_info_request", json!({"target_name": "jupyter.widget"})).await;
    assert_eq!(k.shell_reply().await.content.to_value(), json!({"status": "ok", "comms": {}}));
});

fn pss_bytes(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let kib: u64 = rollup.lines().find_map(|l| l.strip_prefix("Pss:")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    kib * 1024
}
