//! `torchbook run`: notebooks executed headless by the kernel's engine — outputs, parameters
//! and errors written into the executed notebook — and as the ranks of a data-parallel job
//! (`--nproc-per-node 2`), where an example notebook trains to its single-process accuracy and a
//! failing rank stops the job with its rank named.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = support::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn code(source: &str, tags: &[&str]) -> Value {
    json!({"cell_type": "code", "execution_count": null, "metadata": {"tags": tags}, "outputs": [], "source": source})
}

fn write_notebook(path: &Path, cells: Vec<Value>) {
    let nb = json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "torchbook"}}, "cells": cells});
    std::fs::write(path, serde_json::to_string_pretty(&nb).unwrap()).unwrap();
}

fn run(args: &[&str], metrics: &Path) -> Output {
    assert!(std::env::var_os("LIBTORCH").is_some(), "LIBTORCH is not set: run the tests through `make test`");
    Command::new(support::binary())
        .arg("run")
        .args(args)
        .env("TORCHBOOK_METRICS_DIR", metrics)
        .output()
        .unwrap()
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn outputs(nb: &Value, cell: usize) -> &Vec<Value> {
    nb["cells"][cell]["outputs"].as_array().unwrap()
}

fn result_text(nb: &Value, cell: usize) -> String {
    outputs(nb, cell)
        .iter()
        .find(|o| o["output_type"] == "execute_result")
        .map(|o| o["data"]["text/plain"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn a_notebook_runs_headless_with_parameters_outputs_and_errors() {
    let dir = temp_dir("run-headless");
    let input = dir.join("in.ipynb");
    write_notebook(
        &input,
        vec![
            json!({"cell_type": "markdown", "metadata": {}, "source": "# a test"}),
            code("let n: i64 = 1;\nlet name: String = String::from(\"x\");", &["parameters"]),
            code("println!(\"hello {name}\");\nn * 2", &[]),
            code("let t = Tensor::ones(&[2, 2], (Kind::Float, Device::Cpu));\nt.shallow_clone()", &[]),
            code("let v: Vec<i32> = vec![];\nv[3]", &[]),
            code("\"never\"", &[]),
        ],
    );
    let output = dir.join("out.ipynb");
    let ran = run(&[input.to_str().unwrap(), "-o", output.to_str().unwrap(), "-p", "n", "21", "-p", "name", "world"], &dir);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "a failing cell fails the run: {stderr}");
    assert!(stderr.contains("cell 6 (In [5]) failed: Panic"), "{stderr}");
    let nb = read(&output);
    assert_eq!(nb["cells"].as_array().unwrap().len(), 7, "the injected parameters cell is added");
    assert_eq!(nb["cells"][2]["metadata"]["tags"], json!(["injected-parameters"]));
    assert_eq!(result_text(&nb, 3), "42");
    assert_eq!(outputs(&nb, 3)[0], json!({"output_type": "stream", "name": "stdout", "text": "hello world\n"}));
    assert_eq!(nb["cells"][3]["execution_count"], 3);
    let tensor = outputs(&nb, 4).iter().find(|o| o["output_type"] == "execute_result").expect("a tensor result");
    assert!(tensor["data"]["text/html"].as_str().is_some_and(|h| h.contains("Float")), "{tensor}");
    let error = outputs(&nb, 5).last().unwrap();
    assert_eq!(error["output_type"], "error");
    assert!(error["evalue"].as_str().unwrap().contains("index out of bounds"), "{error}");
    assert_eq!(outputs(&nb, 6).len(), 0, "cells after the failure do not run");
    assert_eq!(nb["cells"][6]["execution_count"], Value::Null);
    assert_eq!(nb["metadata"]["torchbook_run"]["succeeded"], false);
    assert!(input.exists() && read(&input)["cells"].as_array().unwrap().len() == 6, "the input is left as it was");

    // --allow-errors goes on; an undeclared parameter is the engine's clear error.
    let ran = run(&[input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--allow-errors"], &dir);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(result_text(&read(&output), 5), "\"never\"", "no parameters: no injected cell");
    let ran = run(&[input.to_str().unwrap(), "-o", output.to_str().unwrap(), "-p", "epochs", "3"], &dir);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(!ran.status.success());
    assert!(stderr.contains("does not declare") && stderr.contains("epochs"), "{stderr}");

    // Bad input: a missing file and a file that is not a notebook.
    let ran = run(&[dir.join("missing.ipynb").to_str().unwrap()], &dir);
    assert!(String::from_utf8_lossy(&ran.stderr).contains("no such notebook"));
    std::fs::write(dir.join("bad.ipynb"), "{\"cells\": [").unwrap();
    let ran = run(&[dir.join("bad.ipynb").to_str().unwrap()], &dir);
    assert!(String::from_utf8_lossy(&ran.stderr).contains("is not a notebook: invalid JSON"), "{}", String::from_utf8_lossy(&ran.stderr));
}

#[test]
fn two_ranks_train_the_quickstart_to_its_single_process_accuracy() {
    let dir = temp_dir("run-ranks");
    let notebook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/01-quickstart.ipynb");
    let single = dir.join("single.ipynb");
    let parallel = dir.join("parallel.ipynb");
    let ran = run(&[notebook.to_str().unwrap(), "-o", single.to_str().unwrap()], &dir);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let ran = run(&[notebook.to_str().unwrap(), "-o", parallel.to_str().unwrap(), "--nproc-per-node", "2"], &dir);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{stderr}");
    assert!(stderr.contains("[rank 1] torchbook run: rank 1 of 2 joined the process group"), "{stderr}");
    let accuracy = |path: &Path| -> f64 {
        let nb = read(path);
        let last = nb["cells"].as_array().unwrap().len() - 1;
        result_text(&nb, last).parse().unwrap_or_else(|_| panic!("last cell: {}", nb["cells"][last]))
    };
    let (one, two) = (accuracy(&single), accuracy(&parallel));
    assert_eq!(read(&parallel)["metadata"]["torchbook_run"]["world_size"], 2);
    assert!(two >= one - 0.03 && two > 0.9, "2 ranks reached {two}, one process {one}");
}

#[test]
fn a_failing_rank_stops_the_job_and_is_named() {
    let dir = temp_dir("run-rank-fails");
    let input = dir.join("in.ipynb");
    write_notebook(
        &input,
        vec![
            code("assert_eq!(distributed::world_size(), 2);\nif distributed::rank() == 1 { panic!(\"rank one gives up\"); }", &[]),
            code("distributed::barrier()?;", &[]),
        ],
    );
    let started = Instant::now();
    let ran = run(&[input.to_str().unwrap(), "-o", dir.join("out.ipynb").to_str().unwrap(), "--nproc-per-node", "2"], &dir);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[rank 1] torchbook: cell 1 (In [1]) failed: Panic: rank one gives up"), "{stderr}");
    assert!(stderr.contains("rank 1: exit status 1"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(100), "rank 0 is stopped, not left in its barrier: {:?}", started.elapsed());
}
