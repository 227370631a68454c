//! The tch prelude in a real kernel: a fresh kernel's first cell uses it without any `:dep`,
//! two kernels load it at once, and a kernel without libtorch says why and runs plain Rust.

mod support;

use support::{stream_text, TestKernel};

fn value(messages: &[torchbook_kernel::protocol::Message]) -> String {
    messages
        .iter()
        .find(|m| m.header.msg_type == "execute_result")
        .map(|m| m.content.to_value()["data"]["text/plain"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

kernel_test!(first_cell_uses_the_prelude_without_dep, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k
        .execute("let t = Tensor::ones(&[2, 3], (Kind::Float, Device::Cpu));\nt.sum(Kind::Float).double_value(&[])")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(value(&iopub), "6.0");
    let (reply, iopub) = k
        .execute("let model = Model::new(Sequential::new().add(Dense::new(3)), &[4]).unwrap();\nmodel.parameter_count()")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(value(&iopub), "15");
    let (_, iopub) = k.execute("format!(\"{:?}\", Device::best())").await;
    assert_eq!(value(&iopub), "\"Cpu\"");
});

kernel_test!(two_kernels_load_the_prelude_at_once, async {
    let (mut a, mut b) = tokio::join!(TestKernel::start_with_prelude(), TestKernel::start_with_prelude());
    let code = "Tensor::arange(4, (Kind::Int64, Device::Cpu)).sum(Kind::Int64).int64_value(&[])";
    let ((ra, ia), (rb, ib)) = tokio::join!(a.execute(code), b.execute(code));
    assert_eq!((ra["status"].as_str(), rb["status"].as_str()), (Some("ok"), Some("ok")));
    assert_eq!((value(&ia), value(&ib)), ("6".to_owned(), "6".to_owned()));
});

kernel_test!(missing_libtorch_is_explained_and_plain_rust_runs, async {
    let mut k = TestKernel::start_with_env(&[("LIBTORCH", "/nonexistent/libtorch")]).await;
    let (reply, iopub) = k.execute("1 + 1").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(value(&iopub), "2");
    let said = stream_text(&iopub, "stderr");
    assert!(said.contains("without the tch prelude") && said.contains("/nonexistent/libtorch"), "{said}");
    let (reply, _) = k.execute("Tensor::ones(&[1], (Kind::Float, Device::Cpu))").await;
    assert_eq!(reply["ename"], "CompileError", "no prelude, so Tensor is unknown");
});
