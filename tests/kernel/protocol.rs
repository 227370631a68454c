//! The wire protocol against the real binary: kernel_info, signatures, replays, malformed frames,
//! heartbeat, iopub subscribers, unknown types and shutdown.

mod support;

use bytes::Bytes;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{encode_with_key, types, TestKernel};
use zeromq::{Socket, SocketRecv, SubSocket};

kernel_test!(kernel_info_is_immediate_and_complete, async {
    let mut k = TestKernel::start().await;
    let started = Instant::now();
    let id = k.send_shell("kernel_info_request", json!({})).await;
    let reply = k.shell_reply().await;
    assert!(started.elapsed() < Duration::from_secs(2), "kernel_info must not wait for the engine");
    let c = reply.content.to_value();
    assert_eq!(reply.header.msg_type, "kernel_info_reply");
    assert_eq!(c["status"], "ok");
    assert_eq!(c["protocol_version"], "5.5");
    assert_eq!(c["implementation"], "torchbook");
    assert_eq!(c["language_info"]["name"], "rust");
    assert_eq!(c["language_info"]["file_extension"], ".rs");
    assert!(c["language_info"]["version"].as_str().unwrap().contains('.'));
    assert!(!c["help_links"].as_array().unwrap().is_empty());
    let iopub = k.iopub_until_idle(&id).await;
    assert_eq!(types(&iopub), ["status", "status"], "busy then idle");
    assert_eq!(iopub[0].content.to_value()["execution_state"], "busy");
    // Control answers kernel_info too.
    k.send_control("kernel_info_request", json!({})).await;
    assert_eq!(k.control_reply().await.header.msg_type, "kernel_info_reply");
    // The IPC sockets are the user's alone.
    for channel in 1..=5 {
        let path = format!("{}{channel}", k.endpoint_base().trim_start_matches("ipc://"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{path}");
    }
});

kernel_test!(bad_signature_and_replay_are_dropped, async {
    let mut k = TestKernel::start().await;
    let forged = encode_with_key(k.message("kernel_info_request", json!({})), "wrong key");
    k.send_raw_shell(forged).await;
    let frames = k.frames(k.message("kernel_info_request", json!({})));
    k.send_raw_shell(frames.clone()).await;
    k.send_raw_shell(frames).await; // the very same frames again: a replay
    let first = k.shell_reply().await;
    assert_eq!(first.header.msg_type, "kernel_info_reply");
    // Neither the forgery nor the replay was answered: the next reply is for a new request.
    let id = k.send_shell("kernel_info_request", json!({})).await;
    let next = k.shell_reply().await;
    assert_eq!(next.parent_header.unwrap().msg_id, id);
});

kernel_test!(malformed_frames_leave_the_channel_serving, async {
    let mut k = TestKernel::start().await;
    let good = k.frames(k.message("kernel_info_request", json!({})));
    let mut bad_json = good.clone();
    let n = bad_json.len();
    bad_json[n - 1] = Bytes::from_static(b"{\"unterminated");
    let mut bad_utf8 = good.clone();
    bad_utf8[n - 1] = Bytes::from_static(b"\xff\xfe\xfd");
    let no_delimiter = good[1..].to_vec();
    let too_few = good[..3].to_vec();
    for frames in [bad_json, bad_utf8, no_delimiter, too_few] {
        k.send_raw_shell(frames).await;
    }
    // Well-signed, but content of the wrong shape for its type.
    let mut wrong_shape = k.message("kernel_info_request", json!({}));
    wrong_shape.header.msg_type = "execute_request".into();
    k.send_raw_shell(k.frames(wrong_shape)).await;
    let id = k.send_shell("kernel_info_request", json!({})).await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id, "only the good request is answered");
});

kernel_test!(unknown_request_gets_error_reply, async {
    let mut k = TestKernel::start().await;
    let id = k.send_shell("frobnicate_request", json!({"x": 1})).await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.header.msg_type, "frobnicate_reply");
    assert_eq!(reply.content.to_value()["status"], "error");
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    // Not a request at all: logged and ignored, and the kernel still answers.
    k.send_shell("mystery_message", json!({})).await;
    k.send_shell("kernel_info_request", json!({})).await;
    assert_eq!(k.shell_reply().await.header.msg_type, "kernel_info_reply");
});

kernel_test!(heartbeat_and_control_answer_while_a_cell_runs, async {
    let mut k = TestKernel::start().await;
    assert_eq!(k.ping(b"ping-1").await, b"ping-1");
    k.execute("1").await; // warm up the engine first
    let id = k
        .send_shell(
            "execute_request",
            json!({"code": "std::thread::sleep(std::time::Duration::from_secs(4));"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    assert_eq!(k.ping(b"\x00binary\xff").await, b"\x00binary\xff");
    k.send_control("kernel_info_request", json!({})).await;
    assert_eq!(k.control_reply().await.header.msg_type, "kernel_info_reply");
    assert!(started.elapsed() < Duration::from_secs(2), "answered while busy");
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    assert_eq!(reply.content.to_value()["status"], "ok");
});

kernel_test!(a_client_that_reconnects_mid_cell_gets_the_next_cells_output, async {
    let mut k = TestKernel::start().await;
    k.execute("1").await;
    let away = k
        .send_shell("execute_request", json!({"code": "std::thread::sleep(std::time::Duration::from_secs(2));\nprintln!(\"while away\");"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    k.reconnect().await;
    // The next cell queues behind the one that is running, and its output reaches the new client.
    let (reply, iopub) = k.execute("println!(\"after\");\n6 * 7").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(support::stream_text(&iopub, "stdout"), "after\n");
    assert_eq!(support::result_text(&iopub), "42");
    assert_eq!(reply["execution_count"], 3, "the cell run while away counted: {reply}");
    let _ = away;
});

kernel_test!(two_iopub_subscribers_both_see_output, async {
    let mut k = TestKernel::start().await;
    let mut second = SubSocket::new();
    second
        .connect(&k.iopub_endpoint())
        .await
        .unwrap();
    second.subscribe("").await.unwrap();
    let decode = |frames: zeromq::ZmqMessage, key: &str| {
        let mut signer = torchbook_kernel::protocol::Signer::new(key);
        torchbook_kernel::protocol::WireMessage::decode(frames.into_vec(), &mut signer)
            .unwrap()
            .message
    };
    let welcome = tokio::time::timeout(support::TIMEOUT, second.recv()).await.unwrap().unwrap();
    assert_eq!(decode(welcome, &k.key).header.msg_type, "iopub_welcome");
    let (_, first_view) = k.execute("println!(\"to both\");").await;
    assert!(support::stream_text(&first_view, "stdout").contains("to both"));
    let mut second_view = Vec::new();
    loop {
        let frames = tokio::time::timeout(support::TIMEOUT, second.recv()).await.unwrap().unwrap();
        let message = decode(frames, &k.key);
        let idle = message.header.msg_type == "status"
            && message.content.to_value()["execution_state"] == "idle"
            && message.parent_header.as_ref().is_some_and(|p| p.msg_type == "execute_request");
        second_view.push(message);
        if idle {
            break;
        }
    }
    assert!(support::stream_text(&second_view, "stdout").contains("to both"));
});

kernel_test!(shutdown_on_control_ends_the_process, async {
    let mut k = TestKernel::start().await;
    k.send_control("shutdown_request", json!({"restart": false})).await;
    let reply = k.control_reply().await;
    assert_eq!(reply.header.msg_type, "shutdown_reply");
    assert_eq!(reply.content.to_value()["restart"], false);
    assert!(k.exited_within(Duration::from_secs(10)), "kernel exits after shutdown");
});

kernel_test!(shutdown_on_shell_with_restart_flag, async {
    let mut k = TestKernel::start().await;
    k.send_shell("shutdown_request", json!({"restart": true})).await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.content.to_value()["restart"], true);
    assert!(k.exited_within(Duration::from_secs(10)));
});

kernel_test!(sigint_does_not_kill_the_kernel, async {
    let mut k = TestKernel::start().await;
    let pid = k.process.id();
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    k.send_shell("kernel_info_request", json!({})).await;
    assert_eq!(k.shell_reply().await.header.msg_type, "kernel_info_reply");
});

kernel_test!(interrupt_reply_comes_and_stops_a_running_cell, async {
    let mut k = TestKernel::start().await;
    k.execute("let before = 1;").await;
    let id = k
        .send_shell("execute_request", json!({"code": "loop { std::hint::spin_loop(); }"}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    k.send_control("interrupt_request", json!({})).await;
    let interrupt = k.control_reply().await;
    assert_eq!(interrupt.header.msg_type, "interrupt_reply");
    assert_eq!(interrupt.content.to_value()["status"], "ok");
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    assert!(started.elapsed() < Duration::from_secs(10), "the cell stopped");
    let content = reply.content.to_value();
    assert_eq!(content["status"], "error");
    // Until the cooperative interrupt exists the worker is restarted, and the user is told what
    // was lost.
    assert!(content["traceback"].to_string().contains("before"), "{content}");
    let (reply, _) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok");
});
