//! stdin (input_request/input_reply, including the cases that could hang), inspection, the
//! `:help` pager, `:clear`, and SIGINT sent to the kernel's whole process group.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{result_text, stream_text, TestKernel};

kernel_test!(reading_stdin_directly_asks_the_frontend, async {
    let mut k = TestKernel::start().await;
    let code = r#"let mut line = String::new();
std::io::stdin().read_line(&mut line).unwrap();
line.trim().to_uppercase()"#;
    let id = k.send_shell("execute_request", json!({"code": code, "allow_stdin": true})).await;
    let request = k.stdin_request().await;
    assert_eq!(request.header.msg_type, "input_request");
    assert_eq!(request.parent_header.as_ref().unwrap().msg_id, id, "parented to the execute request");
    assert_eq!(request.content.to_value()["password"], false);
    k.send_stdin("input_reply", json!({"value": "hello"})).await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.content.to_value()["status"], "ok");
    let iopub = k.iopub_until_idle(&id).await;
    assert_eq!(result_text(&iopub), "\"HELLO\"");
    // stdin keeps working for the next cell, and evcxr's own commands are unaffected.
    let (reply, _) = k.execute("line.len()").await;
    assert_eq!(reply["status"], "ok");
});

kernel_test!(without_allow_stdin_the_cell_reads_end_of_file_at_once, async {
    let mut k = TestKernel::start().await;
    let started = Instant::now();
    let code = "let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap()";
    let id = k.send_shell("execute_request", json!({"code": code, "allow_stdin": false})).await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.content.to_value()["status"], "ok");
    let iopub = k.iopub_until_idle(&id).await;
    assert_eq!(result_text(&iopub), "0", "read_line saw end-of-file");
    assert!(stream_text(&iopub, "stderr").contains("allow_stdin is false"));
    assert!(started.elapsed() < Duration::from_secs(60));
});

kernel_test!(interrupt_ends_a_wait_for_input_and_keeps_state, async {
    let mut k = TestKernel::start().await;
    k.execute("let kept = 41;").await;
    let code = "let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap()";
    let id = k.send_shell("execute_request", json!({"code": code, "allow_stdin": true})).await;
    let request = k.stdin_request().await;
    assert_eq!(request.header.msg_type, "input_request");
    // Zeppelin never answers: only an interrupt ends the wait.
    k.send_control("interrupt_request", json!({})).await;
    assert_eq!(k.control_reply().await.header.msg_type, "interrupt_reply");
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    k.iopub_until_idle(&id).await;
    let (reply, iopub) = k.execute("kept + 1").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "42", "the worker was not killed");
});

kernel_test!(torchbook_input_sends_its_prompt_and_password_flag, async {
    let mut k = TestKernel::start_with_prelude().await;
    let code = r#"let name = torchbook::input("Name: ").unwrap();
let secret = torchbook::input_password("Token: ").unwrap();
format!("{name}/{}", secret.len())"#;
    let id = k.send_shell("execute_request", json!({"code": code, "allow_stdin": true})).await;
    let first = k.stdin_request().await.content.to_value();
    assert_eq!(first, json!({"prompt": "Name: ", "password": false}));
    k.send_stdin("input_reply", json!({"value": "Ada"})).await;
    let second = k.stdin_request().await.content.to_value();
    assert_eq!(second, json!({"prompt": "Token: ", "password": true}));
    k.send_stdin("input_reply", json!({"value": "xyz"})).await;
    assert_eq!(k.shell_reply().await.content.to_value()["status"], "ok");
    assert_eq!(result_text(&k.iopub_until_idle(&id).await), "\"Ada/3\"");
    let code = "torchbook::input(\"again\").map_err(|e| e.to_string())";
    let id = k.send_shell("execute_request", json!({"code": code, "allow_stdin": false})).await;
    assert_eq!(k.shell_reply().await.content.to_value()["status"], "ok");
    let shown = result_text(&k.iopub_until_idle(&id).await);
    assert!(shown.contains("allow_stdin is false"), "{shown}");
});

kernel_test!(inspect_shows_signature_docs_and_variables, async {
    let mut k = TestKernel::start().await;
    k.execute("let numbers = vec![1, 2, 3];").await;
    k.send_shell("inspect_request", json!({"code": "Vec::new", "cursor_pos": 8, "detail_level": 0})).await;
    let reply = k.shell_reply().await.content.to_value();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["found"], true);
    let text = reply["data"]["text/plain"].as_str().unwrap();
    assert!(text.contains("pub const fn new()"), "{text}");
    // The cursor in the middle of a name inspects the whole name.
    k.send_shell("inspect_request", json!({"code": "numbers.len()", "cursor_pos": 3, "detail_level": 1})).await;
    let reply = k.shell_reply().await.content.to_value();
    let text = reply["data"]["text/plain"].as_str().unwrap();
    assert!(text.contains("numbers: Vec<i32>") && text.contains("[1, 2, 3]"), "{text}");
    k.send_shell("inspect_request", json!({"code": "  ", "cursor_pos": 1, "detail_level": 0})).await;
    let reply = k.shell_reply().await.content.to_value();
    assert_eq!((reply["status"].as_str(), reply["found"].as_bool()), (Some("ok"), Some(false)));
});

kernel_test!(help_is_a_pager_payload_and_clear_drops_state, async {
    let mut k = TestKernel::start().await;
    let (reply, _) = k.execute(":help").await;
    let page = &reply["payload"][0];
    assert_eq!(page["source"], "page");
    let text = page["data"]["text/plain"].as_str().unwrap();
    for command in [":vars", ":clear", ":timing", ":dep"] {
        assert!(text.contains(command), "{command} is documented");
    }
    k.execute("let gone = 1;").await;
    let (reply, _) = k.execute(":clear").await;
    assert_eq!(reply["status"], "ok");
    let (reply, _) = k.execute("gone").await;
    assert_eq!(reply["status"], "error", "variables are dropped");
    let (reply, _) = k.execute("panic!(\"after clear\")").await;
    assert_eq!(reply["ename"], "Panic", "the worker setup runs again after :clear");
});

kernel_test!(sigint_to_the_process_group_interrupts_the_cell_only, async {
    // jupyter_client's signal mode sends SIGINT to the kernel's whole process group.
    let mut k = TestKernel::start_in_own_process_group().await;
    k.execute("let kept = 1;").await;
    let id = k.send_shell("execute_request", json!({"code": "std::thread::sleep(std::time::Duration::from_secs(10)); 5"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let group = k.process.id() as i32;
    // SAFETY: signalling the process group of the kernel this test started.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    // A sleep cannot stop cooperatively: after the grace period the worker is killed, and the
    // error names what was lost.
    let content = reply.content.to_value();
    assert_eq!(content["status"], "error");
    assert!(content["traceback"].to_string().contains("kept"), "{content}");
    k.iopub_until_idle(&id).await;
    let (reply, iopub) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok", "the kernel survived the group's SIGINT");
    assert_eq!(result_text(&iopub), "2");
});

kernel_test!(fifty_queued_cells_behind_an_error_are_aborted, async {
    let mut k = TestKernel::start().await;
    k.execute("1").await;
    k.send_shell("execute_request", json!({"code": "panic!(\"stop\")", "stop_on_error": true})).await;
    let mut queued = Vec::new();
    for i in 0..50 {
        queued.push(k.send_shell("execute_request", json!({"code": format!("{i}")})).await);
    }
    assert_eq!(k.shell_reply().await.content.to_value()["status"], "error");
    for id in &queued {
        let reply = k.shell_reply().await;
        assert_eq!(&reply.parent_header.unwrap().msg_id, id);
        assert_eq!(reply.content.to_value()["status"], "aborted");
    }
    let (reply, _) = k.execute("7").await;
    assert_eq!(reply["status"], "ok");
});

kernel_test!(a_password_typed_in_reaches_the_cell_and_nothing_else, async {
    let dir = support::temp_dir();
    let (history, build_log, log) = (dir.join("history.jsonl"), dir.join("cell-build.log"), dir.join("kernel.log"));
    let env = [
        ("TORCHBOOK_HISTORY", history.to_str().unwrap()),
        ("TORCHBOOK_CELL_BUILD_LOG", build_log.to_str().unwrap()),
        ("TORCHBOOK_TRACE", "1"),
    ];
    let mut k = TestKernel::start_with_log(&env, &log).await;
    let secret = "s3cr3t-Passphrase-42";
    let code = "let secret = torchbook::input_password(\"Key: \").unwrap();\nprintln!(\"{} characters\", secret.len());";
    let id = k.send_shell("execute_request", json!({"code": code, "allow_stdin": true, "store_history": true})).await;
    assert_eq!(k.stdin_request().await.content.to_value()["password"], true);
    k.send_stdin("input_reply", json!({"value": secret})).await;
    assert_eq!(k.shell_reply().await.content.to_value()["status"], "ok");
    let mut iopub = k.iopub_until_idle(&id).await;
    assert_eq!(stream_text(&iopub, "stdout"), "20 characters\n", "the cell got it");
    // Later cells use it (still in the session), and the history is asked for.
    let (reply, more) = k.execute("secret.chars().rev().count()").await;
    assert_eq!(reply["status"], "ok");
    iopub.extend(more);
    let id = k.send_shell("history_request", json!({"output": true, "raw": true, "hist_access_type": "tail", "n": 10})).await;
    let history_reply = k.shell_reply().await;
    k.iopub_until_idle(&id).await;
    let everything = [
        iopub.iter().map(|m| m.content.to_value().to_string()).collect::<Vec<_>>().join("\n"),
        history_reply.content.to_value().to_string(),
        std::fs::read_to_string(&history).unwrap_or_default(),
        std::fs::read_to_string(&build_log).unwrap_or_default(),
    ];
    for (what, text) in ["iopub", "history_reply", "history file", "cell build log"].iter().zip(&everything) {
        assert!(!text.contains(secret), "the password reached the {what}: {text}");
    }
    assert!(everything[2].contains("input_password"), "history was written: {}", everything[2]);
    drop(k);
    std::thread::sleep(Duration::from_millis(500));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("torchbook"), "the kernel logged (TORCHBOOK_TRACE): {log_text}");
    assert!(!log_text.contains(secret), "the password reached the kernel's log: {log_text}");
});
