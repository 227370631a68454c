//! `:ranks N` in a live kernel: the kernel starts N−1 more engines, every following cell runs on
//! all of them (rank 0's output shown, another rank's error shown with its rank), `fit` runs
//! data-parallel, and `:ranks 1` returns to one engine.

mod support;

use support::{result_text, stream_text, TestKernel};

kernel_test!(cells_run_on_every_rank_and_fit_is_data_parallel, async {
    let mut k = TestKernel::start_with_prelude().await;
    let (reply, iopub) = k.execute(":ranks 2").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(stream_text(&iopub, "stdout").contains("2 ranks joined"), "{}", stream_text(&iopub, "stdout"));

    // Rank 0's value is shown; each rank has its own rank.
    let (_, iopub) = k.execute("(distributed::rank(), distributed::world_size())").await;
    assert_eq!(result_text(&iopub), "(0, 2)");
    let (reply, _) = k.execute("if distributed::rank() == 1 { panic!(\"only rank one\"); }").await;
    assert_eq!(reply["status"], "error");
    assert!(reply["evalue"].as_str().unwrap().starts_with("rank 1: only rank one"), "{reply}");
    let (_, iopub) = k
        .execute("let mut t = Tensor::from(distributed::rank() as f32 + 1.0);\ndistributed::all_reduce(&mut t, ReduceOp::Sum)?;\nt.double_value(&[])")
        .await;
    assert_eq!(result_text(&iopub), "3.0");

    // Each rank starts from its own random weights; after fit they are rank 0's, trained on
    // both shards.
    let (reply, _) = k
        .execute(
            "let xs = Tensor::randn(&[256, 4], (Kind::Float, Device::Cpu));\n\
             let ys = xs.sum_dim_intlist(&[1i64][..], false, Kind::Float).gt(0.0).to_kind(Kind::Int64);\n\
             distributed::broadcast(&mut xs.shallow_clone(), 0)?;\n\
             let data = Dataset::new(xs, ys)?;\n\
             let mut model = Model::new(Sequential::new().add(Dense::new(8)).add(ReLU).add(Dense::new(2)), &[4])?;\n\
             model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);\n\
             let history = model.fit(&data, FitOptions { epochs: 3, batch_size: 32, verbose: 0, ..Default::default() })?;",
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let (reply, iopub) = k
        .execute(
            "let total: f64 = model.var_store().variables().values().map(|p| p.abs().sum(Kind::Double).double_value(&[])).sum();\n\
             let (mut hi, mut lo) = (Tensor::from(total), Tensor::from(total));\n\
             distributed::all_reduce(&mut hi, ReduceOp::Max)?;\n\
             distributed::all_reduce(&mut lo, ReduceOp::Min)?;\n\
             (hi.double_value(&[]) == lo.double_value(&[]), history.get(\"loss\").len())",
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "(true, 3)");

    let (reply, iopub) = k.execute(":ranks 1").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(stream_text(&iopub, "stdout").contains("left the group"), "{}", stream_text(&iopub, "stdout"));
    let (_, iopub) = k.execute("distributed::world_size()").await;
    assert_eq!(result_text(&iopub), "1");
    let (reply, _) = k.execute(":ranks zero").await;
    assert!(reply["evalue"].as_str().unwrap().contains("not a number"), "{reply}");
});
