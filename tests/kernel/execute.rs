//! Running cells through evcxr: results, streamed and batched output, compile errors with a
//! caret, panics that keep earlier variables, evcxr `:commands`, silent execution.

mod support;

use serde_json::json;
use std::time::Duration;

use support::{stream_text, types, TestKernel};

kernel_test!(values_counts_and_message_order, async {
    let mut k = TestKernel::start().await;
    let (reply, iopub) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["execution_count"], 1);
    assert_eq!(types(&iopub), ["status", "execute_input", "execute_result", "status"]);
    let result = iopub[2].content.to_value();
    assert_eq!(result["data"]["text/plain"], "2");
    assert_eq!(result["execution_count"], 1);
    let (reply, iopub) = k.execute("let v = vec![1, 2, 3];").await;
    assert_eq!(reply["execution_count"], 2);
    assert!(!types(&iopub).contains(&"execute_result".to_owned()), "a statement has no value");
    let (_, iopub) = k.execute("v.iter().sum::<i32>()").await;
    assert_eq!(iopub[2].content.to_value()["data"]["text/plain"], "6");
    // silent: no execute_input, no result, the count does not move.
    let id = k
        .send_shell("execute_request", json!({"code": "40 + 2", "silent": true}))
        .await;
    let reply = k.shell_reply().await.content.to_value();
    assert_eq!(reply["execution_count"], 3);
    assert_eq!(types(&k.iopub_until_idle(&id).await), ["status", "status"]);
});

kernel_test!(output_is_streamed_while_the_cell_runs, async {
    let mut k = TestKernel::start().await;
    k.execute("1").await;
    let code = r#"println!("before"); eprintln!("on stderr");
std::thread::sleep(std::time::Duration::from_millis(1500)); println!("after");"#;
    let id = k.send_shell("execute_request", json!({"code": code})).await;
    let timed = k.iopub_until_idle_timed(&id).await;
    let first_stream_at = timed.iter().find(|(m, _)| m.header.msg_type == "stream").map(|(_, at)| *at);
    let messages: Vec<_> = timed.into_iter().map(|(m, _)| m).collect();
    let waited = first_stream_at.expect("stream output").elapsed();
    assert!(waited > Duration::from_millis(1000), "first output came {waited:?} before idle");
    assert_eq!(stream_text(&messages, "stdout"), "before\nafter\n");
    assert_eq!(stream_text(&messages, "stderr"), "on stderr\n");
    k.shell_reply().await;
});

kernel_test!(many_lines_are_batched, async {
    let mut k = TestKernel::start().await;
    let (reply, iopub) = k.execute("for i in 0..10000 { println!(\"line {i}\"); }").await;
    assert_eq!(reply["status"], "ok");
    let streams = iopub.iter().filter(|m| m.header.msg_type == "stream").count();
    let text = stream_text(&iopub, "stdout");
    assert_eq!(text.lines().count(), 10000);
    assert!(text.ends_with("line 9999\n"));
    assert!(streams <= 20, "{streams} stream messages for 10,000 lines");
});

kernel_test!(compile_error_shows_line_and_caret, async {
    let mut k = TestKernel::start().await;
    let (reply, iopub) = k.execute("let ok = 1;\nlet n: i32 = \"text\";").await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "CompileError");
    assert_eq!(reply["evalue"], "mismatched types");
    let error = iopub.iter().find(|m| m.header.msg_type == "error").expect("error on iopub");
    let traceback = error.content.to_value()["traceback"].to_string();
    assert!(traceback.contains("E0308"), "{traceback}");
    assert!(traceback.contains("cell:2:"), "{traceback}");
    assert!(traceback.contains("let n: i32 = \\\"text\\\";"), "{traceback}");
    assert!(traceback.contains("^^^^^^"), "{traceback}");
    // The kernel carries on.
    let (reply, _) = k.execute("2 * 21").await;
    assert_eq!(reply["status"], "ok");
});

kernel_test!(panic_is_an_error_and_keeps_earlier_variables, async {
    let mut k = TestKernel::start().await;
    k.execute("let kept = 41;").await;
    let (reply, iopub) = k.execute("let lost = 1;\npanic!(\"boom {}\", kept);").await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "Panic");
    assert_eq!(reply["evalue"], "boom 41");
    assert!(iopub.iter().any(|m| m.header.msg_type == "error"));
    let (reply, iopub) = k.execute("kept + 1").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(iopub[2].content.to_value()["data"]["text/plain"], "42");
});

/// The `error` message a failed cell published, as JSON.
fn error_message(iopub: &[torchbook_kernel::protocol::Message]) -> serde_json::Value {
    iopub.iter().find(|m| m.header.msg_type == "error").map(|m| m.content.to_value()).expect("an error message on iopub")
}

kernel_test!(an_error_passed_on_with_question_mark_fails_the_cell, async {
    let mut k = TestKernel::start().await;
    k.execute("let kept = 41;").await;
    let (reply, iopub) = k.execute("let lost = 1;\nlet r: Result<i32, String> = Err(\"boom\".into());\nr?;").await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!((reply["ename"].as_str(), reply["evalue"].as_str()), (Some("String"), Some("boom")), "{reply}");
    let error = error_message(&iopub);
    assert_eq!(error["ename"], "String");
    assert!(error["traceback"].to_string().contains("boom"), "{error}");
    assert!(!stream_text(&iopub, "stderr").contains("boom"), "the message is the error's, not stderr's");
    let (reply, iopub) = k.execute("std::fs::read_to_string(\"/nonexistent/data.csv\")?;").await;
    assert_eq!(reply["ename"], "std::io::Error", "{reply}");
    assert!(reply["evalue"].as_str().unwrap().contains("No such file"), "{reply}");
    assert_eq!(error_message(&iopub)["ename"], "std::io::Error");
    let (reply, _) = k.execute("\"x1\".parse::<i32>()?").await;
    assert_eq!((reply["status"].as_str(), reply["ename"].as_str()), (Some("error"), Some("core::num::ParseIntError")), "{reply}");
    // Earlier variables survive; the failed cell's do not.
    let (reply, iopub) = k.execute("kept + 1").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(support::result_text(&iopub), "42");
    let (reply, _) = k.execute("lost").await;
    assert_eq!(reply["ename"], "CompileError", "{reply}");
    // A `?` that does not fail is a success.
    let (reply, iopub) = k.execute("let fine: Result<i32, String> = Ok(2);\nfine? + kept").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(support::result_text(&iopub), "43");
});

kernel_test!(a_question_mark_error_stops_the_queue_with_stop_on_error, async {
    let mut k = TestKernel::start().await;
    let failing = k.send_shell("execute_request", serde_json::json!({"code": "Err::<(), _>(std::fmt::Error)?;", "stop_on_error": true})).await;
    let queued = k.send_shell("execute_request", serde_json::json!({"code": "1 + 1"})).await;
    let first = k.shell_reply().await;
    assert_eq!(first.parent_header.as_ref().unwrap().msg_id, failing);
    assert_eq!(first.content.to_value()["status"], "error");
    assert_eq!(first.content.to_value()["ename"], "core::fmt::Error");
    let second = k.shell_reply().await;
    assert_eq!(second.parent_header.as_ref().unwrap().msg_id, queued);
    assert_eq!(second.content.to_value()["status"], "aborted", "the queued cell is aborted");
});

kernel_test!(worker_crash_is_reported_and_kernel_recovers, async {
    let mut k = TestKernel::start().await;
    k.execute("let doomed = 7;").await;
    let (reply, _) = k.execute("std::process::abort();").await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "WorkerDied");
    assert!(reply["traceback"].to_string().contains("doomed"), "{}", reply["traceback"]);
    let (reply, iopub) = k.execute("3 + 4").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(iopub[2].content.to_value()["data"]["text/plain"], "7");
    // Panics are still reported after the restart.
    let (reply, _) = k.execute("panic!(\"again\")").await;
    assert_eq!(reply["ename"], "Panic");
});

kernel_test!(engine_process_death_fails_the_cell_and_a_fresh_engine_takes_over, async {
    let mut k = TestKernel::start().await;
    let (reply, _) = k.execute("let kept = 5;").await;
    assert_eq!(reply["status"], "ok");
    // evcxr runs in a child process of the kernel, `torchbook engine`.
    let children = |pid: u32| -> Vec<u32> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks
            .flat_map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default()
                .split_whitespace().map(|c| c.parse().unwrap()).collect::<Vec<u32>>())
            .collect()
    };
    let engines: Vec<u32> = children(k.process.id())
        .into_iter()
        .filter(|c| std::fs::read_to_string(format!("/proc/{c}/cmdline")).unwrap_or_default().contains("\0engine"))
        .collect();
    assert_eq!(engines.len(), 1, "one engine process");
    let id = k.send_shell("execute_request", json!({"code": "std::thread::sleep(std::time::Duration::from_secs(60));"})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::process::Command::new("kill").args(["-KILL", &engines[0].to_string()]).status().unwrap();
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    let content = reply.content.to_value();
    assert_eq!(content["ename"], "EngineDied", "{content}");
    assert!(content["evalue"].as_str().unwrap().contains("signal 9"), "{content}");
    k.iopub_until_idle(&id).await;
    // The kernel stays up; the next cell gets a fresh engine, without the old variables.
    let (reply, iopub) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(support::result_text(&iopub), "2");
    assert!(stream_text(&iopub, "stderr").contains("starting a fresh Rust engine"), "{:?}", types(&iopub));
    let (reply, _) = k.execute("kept").await;
    assert_eq!(reply["ename"], "CompileError", "{reply}");
    assert_eq!(children(k.process.id()).len(), 1, "the dead engine was reaped and replaced");
});

kernel_test!(interrupting_a_compile_that_never_ends_restarts_the_engine, async {
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_PRELUDE", "0"), ("TORCHBOOK_INTERRUPT_GRACE_MS", "500")]).await;
    // rustc's const evaluator loops for ever (the lint that would stop it is allowed).
    let endless = "#[allow(long_running_const_eval)]\nconst X: u64 = { let mut i = 0u64; loop { i = i.wrapping_add(1); } };\nX";
    let id = k.send_shell("execute_request", json!({"code": endless})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    k.send_control("interrupt_request", json!({})).await;
    k.control_reply().await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    let content = reply.content.to_value();
    assert_eq!(content["ename"], "EngineDied", "killing the worker cannot stop a compile: {content}");
    k.iopub_until_idle(&id).await;
    // The engine's rustc went with it (its command line names the kernel's folder)...
    let folder = format!("/tmp/torchbook-{}-", k.process.id());
    let compiling = || {
        std::fs::read_dir("/proc").unwrap().filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&folder) && c.contains("--crate-name ctx"))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(compiling(), 0, "no rustc of the killed engine is left");
    // ...and the next cell runs in a fresh engine.
    let (reply, iopub) = k.execute("6 * 7").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(support::result_text(&iopub), "42");
});

kernel_test!(cargo_builds_every_cell_when_asked_to, async {
    let dir = support::temp_dir();
    let log = dir.join("cell-build.log");
    let log_path = log.to_str().unwrap();
    for (setting, replays) in [("0", true), ("1", false)] {
        let env = [("TORCHBOOK_PRELUDE", "0"), ("TORCHBOOK_CELL_CARGO", setting), ("TORCHBOOK_CELL_BUILD_LOG", log_path)];
        let mut k = TestKernel::start_with_env(&env).await;
        // Variables too: their types come from evcxr's rust-analyzer when cargo builds.
        for (code, shown) in [("1 + 1", "2"), ("let v = vec![1, 2];", ""), ("v.len() + 3", "5")] {
            let (reply, iopub) = k.execute(code).await;
            assert_eq!(reply["status"], "ok", "TORCHBOOK_CELL_CARGO={setting} {code}: {reply}");
            assert_eq!(support::result_text(&iopub), shown);
        }
        let built = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(built.contains("rustc built the cell without cargo"), replays, "TORCHBOOK_CELL_CARGO={setting}: {built}");
        let _ = std::fs::remove_file(&log);
    }
    let _ = std::fs::remove_dir_all(dir);
});

kernel_test!(a_users_own_evcxr_folder_is_used_and_kept, async {
    let dir = support::temp_dir();
    let folder = dir.join("my-evcxr");
    let log = dir.join("cell-build.log");
    let env = [("TORCHBOOK_PRELUDE", "0"), ("EVCXR_TMPDIR", folder.to_str().unwrap()), ("TORCHBOOK_CELL_BUILD_LOG", log.to_str().unwrap())];
    let mut k = TestKernel::start_with_env(&env).await;
    for (code, shown) in [("let v = vec![1, 2];", ""), ("v.len() + 3", "5"), ("v.len() + 4", "6")] {
        let (reply, iopub) = k.execute(code).await;
        assert_eq!(reply["status"], "ok", "{code}: {reply}");
        assert_eq!(support::result_text(&iopub), shown);
    }
    let built = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(built.contains("rustc built the cell without cargo"), "cells are built by the stand-in there too: {built}");
    k.send_control("shutdown_request", json!({"restart": false})).await;
    k.control_reply().await;
    assert!(k.exited_within(Duration::from_secs(10)), "kernel exits after shutdown");
    assert!(folder.join("src/lib.rs").exists(), "the user's folder is kept");
    let _ = std::fs::remove_dir_all(dir);
});

kernel_test!(evcxr_commands_pass_through, async {
    let mut k = TestKernel::start().await;
    k.execute("let answer: u64 = 42;").await;
    let (reply, iopub) = k.execute(":vars").await;
    assert_eq!(reply["status"], "ok");
    let shown = serde_json::to_string(&iopub.iter().map(|m| m.content.to_value()).collect::<Vec<_>>())
        .unwrap();
    assert!(shown.contains("answer") && shown.contains("u64"), "{shown}");
});

kernel_test!(stop_on_error_aborts_the_queue_then_recovers, async {
    let mut k = TestKernel::start().await;
    k.execute("1").await;
    let failing = k.send_shell("execute_request", json!({"code": "panic!(\"first fails\")", "stop_on_error": true})).await;
    let mut queued = Vec::new();
    for _ in 0..5 {
        queued.push(k.send_shell("execute_request", json!({"code": "1 + 1"})).await);
    }
    let first = k.shell_reply().await;
    assert_eq!(first.parent_header.unwrap().msg_id, failing);
    assert_eq!(first.content.to_value()["status"], "error");
    for id in &queued {
        let reply = k.shell_reply().await;
        assert_eq!(&reply.parent_header.unwrap().msg_id, id);
        assert_eq!(reply.content.to_value()["status"], "aborted");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (reply, _) = k.execute("2 + 2").await;
    assert_eq!(reply["status"], "ok", "new requests run again once the queue is drained");
    // Without stop_on_error the next cell runs.
    k.send_shell("execute_request", json!({"code": "panic!(\"again\")", "stop_on_error": false})).await;
    let next = k.send_shell("execute_request", json!({"code": "3 + 3"})).await;
    assert_eq!(k.shell_reply().await.content.to_value()["status"], "error");
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, next);
    assert_eq!(reply.content.to_value()["status"], "ok");
});

kernel_test!(history_tail_range_and_search, async {
    let dir = support::temp_dir();
    let store = dir.join("history.jsonl");
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_PRELUDE", "0"), ("TORCHBOOK_HISTORY", store.to_str().unwrap())]).await;
    k.execute("let h = 6;").await;
    k.execute("h * 7").await;
    k.send_shell("history_request", json!({"hist_access_type": "tail", "n": 2, "output": true, "raw": true})).await;
    let reply = k.shell_reply().await.content.to_value();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["history"], json!([[1, 1, ["let h = 6;", ""]], [1, 2, ["h * 7", "42"]]]));
    k.send_shell("history_request", json!({"hist_access_type": "search", "pattern": "h *", "raw": true})).await;
    assert_eq!(k.shell_reply().await.content.to_value()["history"], json!([[1, 2, "h * 7"]]));
    drop(k);
    // A new kernel continues the numbering of sessions and sees the old ones.
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_PRELUDE", "0"), ("TORCHBOOK_HISTORY", store.to_str().unwrap())]).await;
    k.send_shell("history_request", json!({"hist_access_type": "range", "session": -1, "start": 1, "stop": 2, "raw": true})).await;
    assert_eq!(k.shell_reply().await.content.to_value()["history"], json!([[1, 1, "let h = 6;"]]));
    std::fs::remove_dir_all(dir).ok();
});

kernel_test!(user_expressions_are_evaluated_after_the_cell, async {
    let mut k = TestKernel::start().await;
    let id = k
        .send_shell(
            "execute_request",
            json!({"code": "let base = 20;", "user_expressions": {"answer": "base * 2 + 2", "broken": "base +", "bad": 5}}),
        )
        .await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    let c = reply.content.to_value();
    assert_eq!(c["status"], "ok");
    assert_eq!(c["user_expressions"]["answer"]["status"], "ok");
    assert_eq!(c["user_expressions"]["answer"]["data"]["text/plain"], "42");
    assert_eq!(c["user_expressions"]["broken"]["status"], "error");
    assert_eq!(c["user_expressions"]["bad"]["ename"], "TypeError");
    k.iopub_until_idle(&id).await;
    let (reply, _) = k.execute("base").await;
    assert_eq!(reply["status"], "ok", "the session is unharmed: {reply}");
});

kernel_test!(comm_open_to_an_unknown_target_is_closed, async {
    let mut k = TestKernel::start().await;
    let id = k
        .send_shell("comm_open", json!({"comm_id": "c-1", "target_name": "jupyter.widget", "data": {}}))
        .await;
    let messages = k.iopub_until_idle(&id).await;
    let close = messages.iter().find(|m| m.header.msg_type == "comm_close").expect("comm_close on iopub");
    assert_eq!(close.content.to_value()["comm_id"], "c-1");
    k.send_shell("comm_info_request", json!({"target_name": "jupyter.widget"})).await;
    let info = k.shell_reply().await.content.to_value();
    assert_eq!(info["comms"], json!({}));
});

kernel_test!(cells_build_below_a_stray_cargo_workspace, async {
    // A `Cargo.toml` with `[workspace]` above the temporary folder would make cargo refuse the
    // cell crate; the kernel puts its folder elsewhere and says so in its log.
    let dir = support::temp_dir();
    std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_PRELUDE", "0"), ("TMPDIR", tmp.to_str().unwrap())]).await;
    let (reply, messages) = k.execute("6 * 7").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(support::result_text(&messages), "42");
    drop(k);
    std::fs::remove_dir_all(dir).ok();
});
