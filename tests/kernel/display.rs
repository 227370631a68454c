//! Rich output through a real kernel: the exact iopub sequence (types, order, parent,
//! display_id) for displays, updates, clear_output, interleaved text, many images, a value that
//! renders itself, evcxr's display convention, text without a newline, huge output, and a
//! training run's live progress.

mod support;

use base64::Engine as _;
use serde_json::Value;
use support::{stream_text, types, TestKernel};
use torchbook_kernel::protocol::Message;

/// The messages between execute_input and idle.
fn outputs(messages: &[Message]) -> Vec<&Message> {
    messages
        .iter()
        .filter(|m| !matches!(m.header.msg_type.as_str(), "status" | "execute_input"))
        .collect()
}

fn content(m: &Message) -> Value {
    m.content.to_value()
}

fn png_size(data: &Value) -> (u32, u32) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_str().expect("base64 text"))
        .expect("base64");
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    (reader.info().width, reader.info().height)
}

fn assert_every_bundle_has_text_plain(messages: &[&Message]) {
    for m in messages {
        if matches!(m.header.msg_type.as_str(), "display_data" | "update_display_data" | "execute_result") {
            assert!(content(m)["data"]["text/plain"].is_string(), "{} without text/plain", m.header.msg_type);
        }
    }
}

kernel_test!(display_update_and_clear_keep_their_place_among_text, async {
    let mut k = TestKernel::start_with_prelude().await;
    let code = r#"println!("a");
Html("<b>1</b>").show();
println!("b");
let h = display(&Markdown("x"));
h.update(&Markdown("y"));
clear_output(true);
println!("c");"#;
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = outputs(&iopub);
    let kinds: Vec<&str> = out.iter().map(|m| m.header.msg_type.as_str()).collect();
    assert_eq!(
        kinds,
        ["stream", "display_data", "stream", "display_data", "update_display_data", "clear_output", "stream"]
    );
    assert_eq!(content(out[0])["text"], "a\n");
    assert_eq!(content(out[1])["data"]["text/html"], "<b>1</b>");
    assert_eq!(content(out[1])["data"]["text/plain"], "1");
    let id = content(out[3])["transient"]["display_id"].clone();
    assert!(id.is_string(), "display has an id");
    assert_eq!(content(out[4])["transient"]["display_id"], id, "update targets that display");
    assert_eq!(content(out[4])["data"]["text/markdown"], "y");
    assert_eq!(content(out[5])["wait"], true);
    assert_eq!(content(out[6])["text"], "c\n");
    let parent = iopub[0].parent_header.as_ref().unwrap().msg_id.clone();
    assert!(iopub.iter().all(|m| m.parent_header.as_ref().unwrap().msg_id == parent));
    assert_every_bundle_has_text_plain(&out);
});

kernel_test!(ten_images_are_ten_outputs_of_their_size, async {
    let mut k = TestKernel::start_with_prelude().await;
    let code = "for i in 0..10 { Image::from_unit_gray(8, 4, &[i as f32 / 10.0; 32]).unwrap().show(); }";
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = outputs(&iopub);
    assert_eq!(out.len(), 10, "{:?}", types(&iopub));
    for m in &out {
        assert_eq!(m.header.msg_type, "display_data");
        let data = &content(m)["data"];
        assert_eq!(png_size(&data["image/png"]), (128, 64), "scaled up 16 times");
        assert!(data["text/html"].as_str().unwrap().starts_with("<img"));
    }
    assert_every_bundle_has_text_plain(&out);
});

kernel_test!(a_value_that_renders_itself_is_the_execute_result, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k.execute("plot::line(&[1.0, 3.0, 2.0]).title(\"t\").size(300, 200)").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = outputs(&iopub);
    assert_eq!(types(&iopub), ["status", "execute_input", "execute_result", "status"]);
    let data = &content(out[0])["data"];
    assert_eq!(png_size(&data["image/png"]), (300, 200));
    assert!(data["image/svg+xml"].as_str().unwrap().contains("<svg"));
    assert!(data["text/html"].is_string());
    assert_eq!(data["text/plain"], "<line chart: t 300×200>");
});

kernel_test!(tensor_html_shows_shape_and_statistics, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k
        .execute("let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, f32::NAN, 5.0, 6.0]).reshape([2, 3]);\nt")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let result = iopub.iter().find(|m| m.header.msg_type == "execute_result").expect("a result");
    let data = &content(result)["data"];
    let html = data["text/html"].as_str().unwrap();
    assert!(html.contains("[2, 3]") && html.contains("Float"), "{html}");
    assert!(html.contains("1.0000 / 6.0000"), "min / max: {html}");
    assert!(html.contains("3.4000"), "mean of the finite values: {html}");
    assert!(html.contains("1 / 0"), "NaN / Inf counts: {html}");
    let text = data["text/plain"].as_str().unwrap();
    assert!(text.starts_with("Tensor[2, 3] Float cpu requires_grad=false"), "{text}");
    let (reply, iopub) = k.execute("Tensor::arange(2000, (Kind::Int64, Device::Cpu)).reshape([40, 50])").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let result = iopub.iter().find(|m| m.header.msg_type == "execute_result").unwrap();
    let text = content(result)["data"]["text/plain"].as_str().unwrap().to_owned();
    assert!(text.contains("[   0    1    2    …   47   48   49]"), "corners of a large tensor:\n{text}");
    assert!(text.contains("[1950 1951 1952    … 1997 1998 1999]"), "{text}");
});

kernel_test!(evcxr_display_blocks_show_in_place, async {
    let mut k = TestKernel::start().await;
    let code = r#"println!("EVCXR_BEGIN_CONTENT text/html\n<i>one</i>\nEVCXR_END_CONTENT");
println!("between");
println!("EVCXR_BEGIN_CONTENT image/png\nAAAA\nEVCXR_END_CONTENT");
std::thread::sleep(std::time::Duration::from_millis(100));
41 + 1"#;
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = outputs(&iopub);
    let kinds: Vec<&str> = out.iter().map(|m| m.header.msg_type.as_str()).collect();
    assert_eq!(kinds, ["display_data", "stream", "display_data", "execute_result"]);
    assert_eq!(content(out[0])["data"]["text/html"], "<i>one</i>");
    assert_eq!(content(out[2])["data"]["image/png"], "AAAA");
    assert_eq!(content(out[3])["data"]["text/plain"], "42");
    assert_every_bundle_has_text_plain(&out);
});

kernel_test!(every_evcxr_block_is_its_own_output_in_order, async {
    let mut k = TestKernel::start().await;
    // Blocks of one MIME type in a loop, then two in one `println!`, then one object's two
    // MIME types (which belong together).
    let code = r#"for i in 0..3 { println!("EVCXR_BEGIN_CONTENT text/html\n<i>n{}</i>\nEVCXR_END_CONTENT", i); }
println!("EVCXR_BEGIN_CONTENT text/html\n<b>a &amp; b</b>\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT text/html\n<p>second</p>\nEVCXR_END_CONTENT");
println!("EVCXR_BEGIN_CONTENT text/html\n<u>both</u>\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT image/png\nAAAA\nEVCXR_END_CONTENT");"#;
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = outputs(&iopub);
    let html: Vec<Value> = out.iter().map(|m| content(m)["data"]["text/html"].clone()).collect();
    assert_eq!(html, ["<i>n0</i>", "<i>n1</i>", "<i>n2</i>", "<b>a &amp; b</b>", "<p>second</p>", "<u>both</u>"], "{out:#?}");
    let plain: Vec<Value> = out.iter().map(|m| content(m)["data"]["text/plain"].clone()).collect();
    assert_eq!(plain, ["n0", "n1", "n2", "a & b", "second", "both"], "a readable text/plain for HTML");
    assert_eq!(content(out[5])["data"]["image/png"], "AAAA", "one object's MIME types stay one output");
    assert_every_bundle_has_text_plain(&out);
});

kernel_test!(text_without_newline_arrives_while_the_cell_runs, async {
    let mut k = TestKernel::start().await;
    let code = r#"print!("10%");
std::thread::sleep(std::time::Duration::from_millis(800));
print!("\r100%");"#;
    let id = k.send_shell("execute_request", serde_json::json!({"code": code})).await;
    let timed = k.iopub_until_idle_timed(&id).await;
    let first = timed
        .iter()
        .find(|(m, _)| m.header.msg_type == "stream")
        .map(|(m, at)| (*at, content(m)["text"].clone()));
    let messages: Vec<Message> = timed.into_iter().map(|(m, _)| m).collect();
    let (at, text) = first.expect("stream output");
    assert_eq!(text, "10%");
    assert!(at.elapsed() > std::time::Duration::from_millis(500), "the partial line came early");
    assert_eq!(stream_text(&messages, "stdout"), "10%\r100%", "the last print! stays with its cell");
    k.shell_reply().await;
});

kernel_test!(huge_output_is_capped_and_the_kernel_stays_usable, async {
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_MAX_OUTPUT_BYTES", "1000000")]).await;
    let code = r#"let line = "x".repeat(999);
for _ in 0..100_000 { println!("{line}"); }"#;
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let shown = stream_text(&iopub, "stdout");
    assert!(shown.len() <= 1_000_000, "{} bytes kept", shown.len());
    assert!(shown.len() >= 900_000, "text up to the limit is kept: {}", shown.len());
    let note = stream_text(&iopub, "stderr");
    assert!(note.contains("99.0 MB of output from this cell were not shown"), "{note}");
    let (reply, _) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok");
});

kernel_test!(heartbeat_and_control_answer_throughout_100_mb_of_output, async {
    let mut k = TestKernel::start_with_env(&[("TORCHBOOK_MAX_OUTPUT_BYTES", "1000000")]).await;
    k.execute("1").await; // the engine is warm: the cell below starts at once
    // 100 MB in ten bursts, a pause after each, so the pings below land while it runs.
    let code = r#"let line = "x".repeat(999);
for i in 0..100_000 { println!("{line}"); if i % 10_000 == 9_999 { std::thread::sleep(std::time::Duration::from_millis(250)); } }"#;
    let id = k.send_shell("execute_request", serde_json::json!({"code": code})).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    for round in 0..8u8 {
        let asked = std::time::Instant::now();
        let payload = [b'p', round];
        assert_eq!(k.ping(&payload).await, payload, "heartbeat, round {round}");
        k.send_control("kernel_info_request", serde_json::json!({})).await;
        assert_eq!(k.control_reply().await.header.msg_type, "kernel_info_reply");
        assert!(asked.elapsed() < std::time::Duration::from_secs(2), "round {round} answered in {:?}", asked.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let iopub = k.iopub_until_idle(&id).await;
    let reply = k.shell_reply().await.content.to_value();
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(stream_text(&iopub, "stdout").len() <= 1_000_000);
    assert!(stream_text(&iopub, "stderr").contains("MB of output from this cell were not shown"));
});

kernel_test!(fit_shows_live_progress_then_a_final_render, async {
    let mut k = TestKernel::start_with_prelude().await;
    let code = r#"let xs = Tensor::randn(&[256, 2], (Kind::Float, Device::Cpu));
let ys = xs.sum_dim_intlist(1, false, Kind::Float).gt(0.0).to_kind(Kind::Int64);
let data = Dataset::new(xs, ys).unwrap();
let mut model = Model::new(Sequential::new().add(Dense::new(8)).add(ReLU).add(Dense::new(2)), &[2]).unwrap();
model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
let history = model.fit(&data, FitOptions { epochs: 3, batch_size: 16, validation: Validation::Split(0.25), verbose: 1, ..Default::default() }).unwrap();"#;
    let (reply, iopub) = k.execute(code).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = outputs(&iopub);
    assert_every_bundle_has_text_plain(&out);
    let kinds: Vec<&str> = out.iter().map(|m| m.header.msg_type.as_str()).collect();
    assert_eq!(&kinds[..2], ["display_data", "display_data"], "{kinds:?}");
    assert_eq!(*kinds.last().unwrap(), "display_data", "a final static render: {kinds:?}");
    let bar = content(out[0])["transient"]["display_id"].clone();
    let curves = content(out[1])["transient"]["display_id"].clone();
    assert_ne!(bar, curves);
    let middle = &out[2..out.len() - 1];
    assert!(middle.iter().all(|m| m.header.msg_type == "update_display_data"), "{kinds:?}");
    let to = |id: &Value| middle.iter().filter(|m| content(m)["transient"]["display_id"] == *id).count();
    // The bar redrawn at the end of every epoch at least, then cleared.
    assert!(to(&bar) >= 4, "{kinds:?}");
    // The curves after each of the 3 epochs, then a clear.
    assert_eq!(to(&curves), 4);
    let bar_text = middle.iter().find(|m| content(m)["transient"]["display_id"] == bar).unwrap();
    let text = content(bar_text)["data"]["text/plain"].as_str().unwrap().to_owned();
    assert!(text.starts_with("epoch 1/3 [") && text.contains("samples/s") && text.contains("ETA"), "{text}");
    let last = content(out[out.len() - 1]);
    assert!(last["data"]["text/plain"].as_str().unwrap().starts_with("Trained 3 epoch(s)"));
    assert!(last["data"]["image/png"].is_string() && last["data"]["text/html"].is_string());
    let (_, iopub) = k.execute("history.len()").await;
    let result = iopub.iter().find(|m| m.header.msg_type == "execute_result").unwrap();
    assert_eq!(content(result)["data"]["text/plain"], "3");
});
