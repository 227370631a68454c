//! Processes killed outright in the middle of a `fit` that checkpoints every epoch: first the
//! cell worker, then the engine. Each time the cell fails with an error that says which
//! process died, the next cell runs, and the last checkpoint written loads into a new model.

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{result_text, TestKernel};

/// The model every cell here builds: the checkpoint's shapes must match it.
const MODEL: &str = "Model::new(Sequential::new().add(Dense::new(32)).add(ReLU).add(Dense::new(2)), &[8]).unwrap()";

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn engine_of(kernel: u32) -> u32 {
    let engines: Vec<u32> = children(kernel)
        .into_iter()
        .filter(|c| std::fs::read_to_string(format!("/proc/{c}/cmdline")).unwrap_or_default().contains("\0engine"))
        .collect();
    assert_eq!(engines.len(), 1, "one engine process");
    engines[0]
}

/// evcxr's worker: the engine's child started with `EVCXR_IS_RUNTIME` in its environment.
fn worker_of(engine: u32) -> u32 {
    let workers: Vec<u32> = children(engine)
        .into_iter()
        .filter(|c| std::fs::read(format!("/proc/{c}/environ")).unwrap_or_default().split(|b| *b == 0).any(|v| v.starts_with(b"EVCXR_IS_RUNTIME=")))
        .collect();
    assert_eq!(workers.len(), 1, "one worker process");
    workers[0]
}

/// The checkpoint files in `dir`, by epoch.
fn checkpoints(dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let epoch = name.strip_prefix("epoch-")?.strip_suffix(".safetensors")?.parse().ok()?;
                    Some((epoch, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Starts a long `fit` that checkpoints into `dir` every epoch, waits for two checkpoints,
/// kills `victim()` with SIGKILL, and returns the failed cell's reply.
async fn kill_during_fit(k: &mut TestKernel, dir: &Path, victim: impl Fn() -> u32) -> serde_json::Value {
    std::fs::create_dir_all(dir).unwrap();
    let fit = format!(
        // In braces: a closure cannot be kept as a session variable.
        r#"{{ manual_seed(0);
let data = Dataset::new(Tensor::randn(&[512, 8], FLOAT_CPU), Tensor::randint(2, &[512], INT64_CPU)).unwrap();
let mut model = {MODEL};
model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
let slow = OnEpochEnd(|_: &EpochLog| std::thread::sleep(std::time::Duration::from_millis(300)));
let checkpoint = ModelCheckpoint::new({:?});
model.fit(&data, FitOptions {{ epochs: 1000, batch_size: 64, verbose: 0, callbacks: vec![Box::new(checkpoint), Box::new(slow)], ..Default::default() }}).unwrap(); }}"#,
        dir.join("epoch-{epoch}.safetensors").to_str().unwrap()
    );
    let id = k.send_shell("execute_request", json!({"code": fit})).await;
    let waited = std::time::Instant::now();
    while checkpoints(dir).len() < 2 {
        assert!(waited.elapsed() < Duration::from_secs(120), "no checkpoints were written in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = victim();
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    let reply = k.shell_reply().await;
    assert_eq!(reply.parent_header.unwrap().msg_id, id);
    k.iopub_until_idle(&id).await;
    reply.content.to_value()
}

/// The newest checkpoint in `dir` loads into a new model, which then predicts.
async fn last_checkpoint_loads(k: &mut TestKernel, dir: &Path) {
    let (epoch, path) = checkpoints(dir).pop().expect("a checkpoint");
    let code = format!(
        "let mut restored = {MODEL};\nrestored.load_weights({:?}).unwrap();\nrestored.predict(&Tensor::zeros([3, 8], FLOAT_CPU), 3).unwrap().size()",
        path.to_str().unwrap()
    );
    let (reply, iopub) = k.execute(&code).await;
    assert_eq!(reply["status"], "ok", "epoch {epoch}'s checkpoint: {reply}\n{}", support::stream_text(&iopub, "stderr"));
    assert_eq!(result_text(&iopub), "[3, 2]");
}

kernel_test!(killing_the_worker_then_the_engine_mid_fit_loses_no_checkpoint, async {
    let dir = support::temp_dir();
    let mut k = TestKernel::start_with_prelude().await;
    let kernel = k.process.id();
    k.execute("1 + 1").await;

    let reply = kill_during_fit(&mut k, &dir.join("worker"), || worker_of(engine_of(kernel))).await;
    assert_eq!(reply["ename"], "WorkerDied", "{reply}");
    let (after, iopub) = k.execute("2 + 2").await;
    assert_eq!(after["status"], "ok", "{after}");
    assert_eq!(result_text(&iopub), "4");
    last_checkpoint_loads(&mut k, &dir.join("worker")).await;

    let reply = kill_during_fit(&mut k, &dir.join("engine"), || engine_of(kernel)).await;
    assert_eq!(reply["ename"], "EngineDied", "{reply}");
    assert!(reply["evalue"].as_str().unwrap().contains("signal 9"), "{reply}");
    // A fresh engine, with the prelude again.
    last_checkpoint_loads(&mut k, &dir.join("engine")).await;
    let _ = std::fs::remove_dir_all(dir);
});
