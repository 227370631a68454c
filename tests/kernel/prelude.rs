//! The tch prelude in a real kernel: a fresh kernel's first cell uses it without any `:dep`,
//! two kernels load it at once, a kernel without libtorch says why and runs plain Rust, and
//! final values are shown by the prelude (see kernel/src/engine/final_value.rs) as evcxr would.

mod support;

use serde_json::json;
use support::{result_text, stream_text, TestKernel};

kernel_test!(first_cell_uses_the_prelude_without_dep, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k
        .execute("let t = Tensor::ones(&[2, 3], (Kind::Float, Device::Cpu));\nt.sum(Kind::Float).double_value(&[])")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "6.0");
    let (reply, iopub) = k
        .execute("let model = Model::new(Sequential::new().add(Dense::new(3)), &[4]).unwrap();\nmodel.parameter_count()")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "15");
    let (_, iopub) = k.execute("format!(\"{:?}\", Device::best())").await;
    assert_eq!(result_text(&iopub), "\"Cpu\"");
});

kernel_test!(final_values_show_as_evcxr_would_with_one_compile, async {
    let mut k = TestKernel::start_with_prelude().await;
    for (code, shown) in [("1 + 1", "2"), ("vec![1, 2]", "[1, 2]"), ("\"s\"", "\"s\""), ("Some(2.5f32)", "Some(2.5)")] {
        let (reply, iopub) = k.execute(code).await;
        assert_eq!(reply["status"], "ok", "{code}: {reply}");
        assert_eq!(result_text(&iopub), shown, "{code}");
    }
    // A variable named last is borrowed, not moved: it is still there afterwards.
    let (_, iopub) = k.execute("let v = vec![String::from(\"a\")];\nv").await;
    assert_eq!(result_text(&iopub), "[\"a\"]");
    let (_, iopub) = k.execute("v.len()").await;
    assert_eq!(result_text(&iopub), "1");
    // A type's own `evcxr_display` wins over its Debug text (plotters' figures are both).
    let (reply, iopub) = k
        .execute("#[derive(Debug)] struct Fig;\nimpl Fig { fn evcxr_display(&self) { println!(\"EVCXR_BEGIN_CONTENT text/html\\n<b>fig</b>\\nEVCXR_END_CONTENT\"); } }\nFig")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let html: Vec<_> = iopub.iter().filter_map(|m| m.content.to_value()["data"]["text/html"].as_str().map(str::to_owned)).collect();
    assert_eq!(html, ["<b>fig</b>"], "{:?}", support::types(&iopub));
    // `()` shows nothing; a command line before the value is still a command.
    let (_, iopub) = k.execute("println!(\"hi\")").await;
    assert_eq!(result_text(&iopub), "");
    assert_eq!(stream_text(&iopub, "stdout"), "hi\n");
    let (reply, iopub) = k.execute(":timing\n2 * 21").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(result_text(&iopub).contains("42"), "{}", result_text(&iopub));
});

kernel_test!(final_value_errors_point_at_the_cell_as_written, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, _) = k.execute("struct Opaque;\nOpaque").await;
    assert_eq!(reply["ename"], "CompileError");
    assert!(reply["evalue"].as_str().unwrap().contains("cannot be shown"), "{reply}");
    let (reply, _) = k.execute("let a = 1;\n  a + \"x\"").await;
    assert_eq!(reply["ename"], "CompileError");
    let traceback = reply["traceback"][0].as_str().unwrap();
    assert!(traceback.contains("--> cell:2:5"), "{traceback}");
    assert!(traceback.contains("2 |   a + \"x\""), "the line as written: {traceback}");
    assert!(!traceback.contains("CellValue"), "{traceback}");
    // user_expressions still come back as data.
    let id = k.send_shell("execute_request", json!({"code": "let w = 7;", "user_expressions": {"twice": "w * 2"}})).await;
    let reply = k.shell_reply().await.content.to_value();
    k.iopub_until_idle(&id).await;
    assert_eq!(reply["user_expressions"]["twice"]["data"]["text/plain"], "14", "{reply}");
});

kernel_test!(cells_after_the_first_build_without_cargo_until_a_dependency_changes, async {
    let dir = support::temp_dir();
    let log = dir.join("cell-build.log");
    let built = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_CELL_BUILD_LOG", log.to_str().unwrap())]).await;
    for (code, shown) in [("1 + 1", "2"), ("Tensor::randn(&[3, 3], FLOAT_CPU).size()", "[3, 3]"), ("2 + 3", "5")] {
        let (reply, iopub) = k.execute(code).await;
        assert_eq!(reply["status"], "ok", "{code}: {reply}");
        assert_eq!(result_text(&iopub), shown, "{code}");
    }
    assert!(built().contains("rustc built the cell without cargo"), "{}", built());
    // Cells with variables build against the runtime's variable store (`engine/variable_store.rs`);
    // evcxr's own is only built if its text is not the one the runtime implements.
    for (code, shown) in [("let kept = vec![1.5f32];", ""), ("kept[0] * 2.0", "3.0")] {
        let (reply, iopub) = k.execute(code).await;
        assert_eq!(reply["status"], "ok", "{code}: {reply}");
        assert_eq!(result_text(&iopub), shown, "{code}");
    }
    assert!(built().contains("variable store: the runtime's") && !built().contains("evcxr's own"), "{}", built());
    // Errors found by a replayed build read as cargo's.
    let (reply, _) = k.execute("let x: i32 = \"a\";").await;
    assert_eq!(reply["ename"], "CompileError", "{reply}");
    assert!(reply["evalue"].as_str().unwrap().contains("mismatched types"), "{reply}");
    assert!(reply["traceback"][0].as_str().unwrap().contains("--> cell:1:14"), "{reply}");
    // A path dependency that changes is rebuilt by cargo, as it would be without the record.
    let dependency = dir.join("pathdep");
    std::fs::create_dir_all(dependency.join("src")).unwrap();
    std::fs::write(dependency.join("Cargo.toml"), "[package]\nname = \"pathdep\"\nversion = \"0.1.0\"\nedition = \"2021\"\n").unwrap();
    std::fs::write(dependency.join("src/lib.rs"), "pub fn value() -> i32 { 1 }\n").unwrap();
    let (reply, _) = k.execute(&format!(":dep pathdep = {{ path = {:?} }}", dependency.to_str().unwrap())).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let (_, iopub) = k.execute("pathdep::value()").await;
    assert_eq!(result_text(&iopub), "1");
    std::fs::write(dependency.join("src/lib.rs"), "pub fn value() -> i32 { 20 }\n").unwrap();
    let (_, iopub) = k.execute("pathdep::value()").await;
    assert_eq!(result_text(&iopub), "20", "the changed dependency is used: {}", built());
    assert!(built().trim_end().lines().last().unwrap().starts_with("cargo built the cell"), "{}", built());
    let (_, iopub) = k.execute("pathdep::value() + 1").await;
    assert_eq!(result_text(&iopub), "21");
    assert!(built().trim_end().lines().last().unwrap().starts_with("rustc built the cell without cargo"), "{}", built());
    let _ = std::fs::remove_dir_all(dir);
});

kernel_test!(two_kernels_load_the_prelude_at_once, async {
    let (mut a, mut b) = tokio::join!(TestKernel::start_with_prelude(), TestKernel::start_with_prelude());
    let code = "Tensor::arange(4, (Kind::Int64, Device::Cpu)).sum(Kind::Int64).int64_value(&[])";
    let ((ra, ia), (rb, ib)) = tokio::join!(a.execute(code), b.execute(code));
    assert_eq!((ra["status"].as_str(), rb["status"].as_str()), (Some("ok"), Some("ok")));
    assert_eq!((result_text(&ia), result_text(&ib)), ("6".to_owned(), "6".to_owned()));
});

kernel_test!(missing_libtorch_is_explained_and_plain_rust_runs, async {
    let mut k = TestKernel::start_with_env(&[("LIBTORCH", "/nonexistent/libtorch")]).await;
    let (reply, iopub) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(result_text(&iopub), "2");
    let said = stream_text(&iopub, "stderr");
    assert!(said.contains("without the tch prelude") && said.contains("/nonexistent/libtorch"), "{said}");
    let (reply, _) = k.execute("Tensor::ones(&[1], (Kind::Float, Device::Cpu))").await;
    assert_eq!(reply["ename"], "CompileError", "no prelude, so Tensor is unknown");
});

kernel_test!(prelude_errors_passed_on_with_question_mark_fail_the_cell, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k
        .execute("let a = Tensor::ones(&[2, 3], FLOAT_CPU);\nlet b = Tensor::ones(&[4, 5], FLOAT_CPU);\na.f_matmul(&b)?;")
        .await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["ename"], "tch::TchError", "{reply}");
    let evalue = reply["evalue"].as_str().unwrap();
    assert!(evalue.contains("cannot be multiplied"), "{evalue}");
    assert!(!evalue.contains("Exception raised from") && !evalue.contains("frame #"), "C++ context kept out: {evalue}");
    let traceback = reply["traceback"].to_string();
    let message_at = traceback.find("cannot be multiplied").expect("the message is in the traceback");
    assert!(traceback.find("Exception raised from").is_none_or(|at| at > message_at), "context after the message: {traceback}");
    assert!(iopub.iter().any(|m| m.header.msg_type == "error"));

    // A `fit` that fails half-way (inputs of the wrong shape) fails the cell, and its live
    // progress block no longer looks as if training were running.
    let setup = r#"let data = Dataset::new(Tensor::randn(&[64, 3], FLOAT_CPU), Tensor::randint(2, &[64], INT64_CPU))?;
let mut model = Model::new(Sequential::new().add(Dense::new(8)).add(ReLU).add(Dense::new(2)), &[5])?;
model.compile(Optimizer::adam(1e-3), Loss::cross_entropy(), &[Metric::Accuracy]);"#;
    let (reply, _) = k.execute(setup).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let (reply, iopub) = k.execute("model.fit(&data, FitOptions { epochs: 2, batch_size: 16, verbose: 1, ..Default::default() })?;").await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["ename"], "torchbook::Error", "{reply}");
    let bar = iopub
        .iter()
        .find(|m| m.header.msg_type == "display_data")
        .map(|m| m.content.to_value()["transient"]["display_id"].clone())
        .expect("fit showed a live block");
    let last_update = iopub
        .iter()
        .filter(|m| m.header.msg_type == "update_display_data" && m.content.to_value()["transient"]["display_id"] == bar)
        .last()
        .map(|m| m.content.to_value()["data"]["text/plain"].as_str().unwrap_or_default().to_owned())
        .expect("the live block was updated");
    assert!(last_update.contains("Training stopped by an error"), "{last_update}");
});

kernel_test!(variable_types_are_inferred_while_rust_analyzer_sees_no_dependency, async {
    let dir = support::temp_dir();
    let log = dir.join("cell-build.log");
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_CELL_BUILD_LOG", log.to_str().unwrap())]).await;
    // No annotations: std, tch, runtime and user types, as evcxr infers them.
    let cells = [
        "let t = Tensor::ones(&[2, 3], FLOAT_CPU);",
        "let v = vec![1, 2, 3];\nlet mut m = std::collections::HashMap::new();\nm.insert(\"a\", 1.5f64);\nlet c = (0..5).map(|x| x * 2).collect::<Vec<_>>();\nlet tup = (1u8, \"x\".to_string());\nlet o = Some(3.0f32);",
        "let model = Model::new(Sequential::new().add(Dense::new(4)), &[3])?;\nlet data = Dataset::new(Tensor::randn(&[8, 3], FLOAT_CPU), Tensor::randint(4, &[8], INT64_CPU))?;",
        "struct P { x: i32 }\nlet p = P { x: 3 };\nlet img = tensor_to_image(&Tensor::rand(&[3, 4, 4], FLOAT_CPU))?;",
    ];
    for cell in cells {
        let (reply, _) = k.execute(cell).await;
        assert_eq!(reply["status"], "ok", "{cell}: {reply}");
    }
    let (reply, iopub) = k.execute("(v.len(), m[\"a\"], c[4], tup.1.len(), o, p.x, model.epochs_trained(), data.len(), t.size(), img.width())").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "(3, 1.5, 8, 1, Some(3.0), 3, 0, 8, [2, 3], 4)");
    let built = std::fs::read_to_string(&log).unwrap_or_default();
    // "answered rust-analyzer's cargo metadata in 13ms (12 of 130 packages, exit 0)"
    let pruned: Vec<(usize, usize)> = built
        .lines()
        .filter_map(|line| {
            let counts = line.split_once(" packages")?.0.rsplit_once('(')?.1;
            let (kept, all) = counts.split_once(" of ")?;
            Some((kept.parse().ok()?, all.parse().ok()?))
        })
        .collect();
    // Types come from rustc (engine/type_probe.rs): until a completion, rust-analyzer gets the
    // cell crate alone.
    assert!(pruned.iter().any(|(kept, all)| *kept == 1 && kept < all), "rust-analyzer got the lean view: {built}");
    let _ = std::fs::remove_dir_all(dir);
});

kernel_test!(interrupt_stops_fit_within_a_batch_and_keeps_state, async {
    let mut k = TestKernel::start_with_prelude().await;
    let setup = r#"manual_seed(0);
let data = Dataset::new(Tensor::randn(&[20000, 64], (Kind::Float, Device::Cpu)), Tensor::randint(10, &[20000], (Kind::Int64, Device::Cpu))).unwrap();
let mut model = Model::new(Sequential::new().add(Dense::new(256)).add(ReLU).add(Dense::new(10)), &[64]).unwrap();
model.compile(Optimizer::adam(1e-3), Loss::cross_entropy(), &[Metric::Accuracy]);"#;
    let (reply, _) = k.execute(setup).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let fit = "let history = model.fit(&data, FitOptions { epochs: 10000, batch_size: 32, verbose: 0, ..Default::default() }).unwrap();";
    let id = k.send_shell("execute_request", json!({"code": fit})).await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let asked = std::time::Instant::now();
    k.send_control("interrupt_request", json!({})).await;
    assert_eq!(k.control_reply().await.content.to_value()["status"], "ok");
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    let content = reply.content.to_value();
    assert_eq!(content["status"], "ok", "fit returned instead of being killed: {content}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(2), "stopped within a batch, not after the grace period");
    let (reply, iopub) = k.execute("(history.interrupted, model.epochs_trained() == history.len(), data.len())").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "(true, true, 20000)", "model, data and History survive");
});

kernel_test!(cell_ignoring_the_interrupt_is_killed_after_the_grace_period, async {
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_INTERRUPT_GRACE_MS", "1000")]).await;
    k.execute("let kept_until_now = 5;").await;
    let id = k.send_shell("execute_request", json!({"code": "loop { std::hint::spin_loop(); }"})).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    k.send_control("interrupt_request", json!({})).await;
    k.control_reply().await;
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    let content = reply.content.to_value();
    assert_eq!(content["ename"], "WorkerDied");
    assert!(content["traceback"].to_string().contains("kept_until_now"), "{content}");
    let (reply, _) = k.execute("Tensor::ones(&[2], (Kind::Float, Device::Cpu)).sum(Kind::Float).double_value(&[])").await;
    assert_eq!(reply["status"], "ok", "the prelude is back after the restart: {reply}");
});
