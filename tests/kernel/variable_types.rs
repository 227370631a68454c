//! Variable types without annotations (placeholders resolved by rustc, see
//! `kernel/src/engine/annotate.rs` and `type_probe.rs`), what a variable that cannot be kept
//! says, where compile errors point in a cell that got placeholders, and completion and
//! inspection of such variables once rust-analyzer has its wide view.

mod support;

use serde_json::json;
use support::{result_text, TestKernel};

/// Runs `code`, expecting success; returns the shown value.
async fn value_of(k: &mut TestKernel, code: &str) -> String {
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{code}: {reply}");
    result_text(&iopub)
}

fn strip_colours(text: &str) -> String {
    let mut out = String::new();
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

kernel_test!(std_tch_runtime_and_user_types_are_inferred, async {
    let mut k = TestKernel::start_with_prelude().await;
    let cells = [
        "let v = vec![1, 2, 3];\nlet mut m = std::collections::HashMap::new();\nm.insert(\"a\".to_string(), 1.5);",
        "let w: Vec<u64> = v.iter().map(|x| *x as u64).collect();\nlet c = v.iter().copied().collect::<Vec<i32>>();",
        "let (a, mut b) = (1u8, String::from(\"x\"));\nb.push('y');\nlet o = Some(2.5);\nlet Some(f) = o else { panic!() };",
        "let t = Tensor::ones([2, 3], FLOAT_CPU);\nlet vs = nn::VarStore::new(Device::Cpu);\nlet model = nn::seq().add(nn::linear(vs.root(), 3, 1, Default::default()));",
        "struct Point { x: f32 }\nlet p = Point { x: 4.0 };",
        "let mut history = Vec::new();\nhistory.push(p.x);",
    ];
    for cell in cells {
        value_of(&mut k, cell).await;
    }
    // Every variable came back in a later cell, with the type it had.
    let shown = value_of(&mut k, "(v.len(), m[\"a\"], w[2], c.len(), a, b.as_str(), f, t.size(), model.len(), history[0])").await;
    assert_eq!(shown, "(3, 1.5, 3, 3, 1, \"xy\", 2.5, [2, 3], 1, 4.0)");
    // Types written in part, and typed destructuring.
    value_of(&mut k, "let partial: Vec<_> = (0..4u8).collect();\nlet (q, r): (i32, String) = (5, \"r\".into());").await;
    assert_eq!(value_of(&mut k, "(partial.len(), q, r.len())").await, "(4, 5, 1)");
    // `:vars` shows the real types.
    let (reply, iopub) = k.execute(":vars").await;
    assert_eq!(reply["status"], "ok");
    let listed = result_text(&iopub);
    assert!(listed.contains("torchbook::prelude::Tensor") && !listed.contains("__tb_infer"), "{listed}");
    // A name bound again later in the same cell: only its last binding is kept.
    value_of(&mut k, "let (shown, _) = (vec![1u8, 2], 0);\nlet shown: Vec<u16> = shown.iter().map(|&x| x as u16 * 10).collect();\nlet z = 1;\nlet z = z as f64 + 0.5;").await;
    assert_eq!(value_of(&mut k, "(shown[1], z)").await, "(20, 1.5)");
    // An integer literal with nothing else to say is an i32, as rustc would make it.
    value_of(&mut k, "let n = 7;").await;
    assert_eq!(value_of(&mut k, "n.checked_mul(i32::MAX).is_none()").await, "true");
});

kernel_test!(variables_that_cannot_be_kept_say_why, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, _) = k.execute("let double = |x: i32| x * 2;").await;
    assert_eq!(reply["status"], "error");
    let evalue = reply["evalue"].as_str().unwrap();
    assert!(evalue.contains("`double` is a closure"), "{evalue}");
    // In braces nothing is kept, and the closure works.
    assert_eq!(value_of(&mut k, "{ let double = |x: i32| x * 2; double(21) }").await, "42");
    let (reply, _) = k.execute("let evens = (0..10).filter(|x| x % 2 == 0);").await;
    assert_eq!(reply["status"], "error");
    assert!(reply["evalue"].as_str().unwrap().contains("`evens`"), "{reply}");
    // The session goes on.
    assert_eq!(value_of(&mut k, "let kept: Vec<i32> = (0..10).filter(|x| x % 2 == 0).collect(); kept.len()").await, "5");
});

kernel_test!(compile_errors_point_at_the_cell_as_written, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k.execute("let total = 1;\nlet (a, b) = (2, 3);  let t = no_such_function(a);").await;
    assert_eq!(reply["status"], "error");
    let error = iopub.iter().find(|m| m.header.msg_type == "error").expect("error on iopub");
    let traceback = error.content.to_value()["traceback"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect::<String>();
    // `no_such_function` is at column 31 of line 2 as typed, whatever was written into the line.
    assert!(traceback.contains("cell:2:31"), "{traceback}");
    assert!(traceback.contains("let (a, b) = (2, 3);  let t = no_such_function(a);"), "{traceback}");
    assert!(!traceback.contains("__tb_infer"), "no placeholder is shown: {traceback}");
    let plain = strip_colours(&traceback);
    let caret_line = plain.lines().find(|l| l.contains('^')).unwrap();
    let caret = caret_line.find('^').unwrap() - caret_line.find('|').unwrap() - 2;
    assert_eq!(caret, 30, "the caret is under the name: {traceback}");
});

kernel_test!(completion_and_inspection_know_inferred_types, async {
    let mut k = TestKernel::start_with_prelude().await;
    value_of(&mut k, "let weights = Tensor::zeros([4], FLOAT_CPU);").await;
    let code = "weights.si";
    k.send_shell("complete_request", json!({"code": code, "cursor_pos": code.len()})).await;
    let reply = k.shell_reply().await.content.to_value();
    let matches: Vec<&str> = reply["matches"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
    assert!(matches.iter().any(|m| m.starts_with("size")), "{reply}");
    k.send_shell("complete_request", json!({"code": "Seque", "cursor_pos": 5})).await;
    let reply = k.shell_reply().await.content.to_value();
    assert!(reply["matches"].to_string().contains("Sequential"), "a prelude item: {reply}");
    k.send_shell("inspect_request", json!({"code": "weights", "cursor_pos": 7, "detail_level": 0})).await;
    let reply = k.shell_reply().await.content.to_value();
    let text = reply["data"]["text/plain"].as_str().unwrap();
    assert!(text.contains("weights: torchbook::prelude::Tensor"), "{text}");
    // Cells after the wider view still work, and so do their new variables.
    value_of(&mut k, "let more = weights.shallow_clone();").await;
    let code = "more.si";
    k.send_shell("complete_request", json!({"code": code, "cursor_pos": code.len()})).await;
    let reply = k.shell_reply().await.content.to_value();
    assert!(reply["matches"].to_string().contains("size"), "{reply}");
});

kernel_test!(a_cell_run_again_takes_its_types_from_the_last_run_unless_they_changed, async {
    let log = support::temp_dir().join("cell-build.log");
    let log_path = log.to_str().unwrap().to_owned();
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_CELL_BUILD_LOG", &log_path)]).await;
    let guessed_builds = || std::fs::read_to_string(&log).unwrap_or_default().matches("(1 guessed)").count();
    let cell = "let x = make();";
    let type_of_x = "std::any::type_name_of_val(&x)";
    value_of(&mut k, "fn make() -> i64 { 5 }").await;
    value_of(&mut k, cell).await;
    assert_eq!(value_of(&mut k, type_of_x).await, "\"i64\"");
    assert_eq!(guessed_builds(), 0, "a new cell is asked about");
    // The same cell again: its `x` is guessed to be what it was, and is.
    value_of(&mut k, cell).await;
    assert_eq!(guessed_builds(), 1, "the second run guessed");
    assert_eq!(value_of(&mut k, type_of_x).await, "\"i64\"");
    assert_eq!(value_of(&mut k, "x + 1").await, "6");
    // The session changed what the cell makes: the guess does not build, rustc is asked, and
    // the variable has its new type with no error shown.
    value_of(&mut k, "fn make() -> String { \"made\".to_string() }").await;
    let (reply, iopub) = k.execute(cell).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(!iopub.iter().any(|m| m.header.msg_type == "error" || m.header.msg_type == "stream"), "nothing shown: {iopub:?}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("guessed variable types did not build"));
    assert_eq!(value_of(&mut k, type_of_x).await, "\"alloc::string::String\"");
    assert_eq!(value_of(&mut k, "x.len()").await, "4");
});
