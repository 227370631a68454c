//! `torchbook run`: executes a notebook headless, without a Jupyter server — the kernel's own
//! engine process, driven cell by cell as nbclient would, the executed notebook written back.
//! With `--nproc-per-node N` (and `--nnodes`…) it launches N copies of itself as the ranks of a
//! data-parallel job ([`launcher`]); each rank joins the process group through torchrun's
//! variables before the first cell, so `fit` runs data-parallel, and rank 0's notebook is the
//! output. Under torchrun, srun or a Kubeflow PyTorchJob, `torchbook run` is one rank.

pub mod cell;
pub mod launcher;
pub mod notebook;

use crate::kernel::engine::{Engine, EngineFolder};
use notebook::{CliParameter, Notebook, NotebookError};
use serde_json::{json, Map};
use std::path::PathBuf;

/// What to run and where the result goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub notebook: PathBuf,
    /// `None`: the input file is overwritten, as `papermill IN IN` would.
    pub output: Option<PathBuf>,
    pub parameters: Vec<CliParameter>,
    /// Go on after a failing cell (nbconvert's `--allow-errors`).
    pub allow_errors: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Notebook(#[from] NotebookError),
    #[error("cannot join the process group before the first cell: {0}")]
    Join(String),
    #[error("cell {cell} (In [{count}]) failed: {ename}: {evalue}")]
    CellFailed { cell: usize, count: u64, ename: String, evalue: String },
    #[error("{0}")]
    Launch(String),
}

/// This process's rank when a launcher started it (`RANK`), for messages and the output.
pub fn launched_rank() -> Option<usize> {
    std::env::var("RANK").ok()?.trim().parse().ok()
}

/// Executes the notebook in one engine and writes the executed notebook (rank 0 only, when
/// this process is one rank of several). Errors name the cell; the notebook is written either
/// way, with the failing cell's error in its outputs and later cells not run.
pub async fn run_notebook(options: &RunOptions, folder: EngineFolder, log: &mut dyn FnMut(&str)) -> Result<(), RunError> {
    let mut notebook = Notebook::read(&options.notebook)?;
    notebook.inject_parameters(&options.parameters);
    notebook.clear_outputs();
    let rank = launched_rank();
    let world_size: Option<usize> = std::env::var("WORLD_SIZE").ok().and_then(|v| v.trim().parse().ok());
    let mut engine = Engine::start(folder);
    let started = std::time::Instant::now();

    if world_size.is_some() {
        // Before the notebook's cells, so that its `fit` is data-parallel; a notebook calling
        // `init_if_launched()` itself finds the group joined.
        let joined = cell::run_cell(&mut engine, "torchbook::distributed::init_if_launched()?;", 0).await;
        if let Some(error) = joined.error {
            return Err(RunError::Join(format!("{}: {}", error.ename, error.evalue)));
        }
        log(&format!(
            "torchbook run: rank {} of {} joined the process group",
            rank.unwrap_or(0),
            world_size.unwrap_or(1)
        ));
    }

    let mut count = 0;
    let mut failure = None;
    for index in 0..notebook.len() {
        if !notebook.is_code(index) {
            continue;
        }
        let source = notebook.source(index);
        if source.trim().is_empty() {
            continue;
        }
        count += 1;
        let cell_started = std::time::Instant::now();
        let result = cell::run_cell(&mut engine, &source, count).await;
        notebook.set_result(index, count, result.outputs);
        log(&format!("torchbook run: In [{count}] {:.1} s", cell_started.elapsed().as_secs_f64()));
        if let Some(error) = result.error {
            let expected = notebook.tags(index).iter().any(|t| t == "raises-exception");
            if !expected && !options.allow_errors {
                for line in &error.traceback {
                    log(line);
                }
                failure = Some(RunError::CellFailed { cell: index + 1, count, ename: error.ename, evalue: error.evalue });
                break;
            }
        }
    }

    let mut metadata = Map::new();
    metadata.insert("seconds".into(), json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0));
    metadata.insert("world_size".into(), json!(world_size.unwrap_or(1)));
    metadata.insert("succeeded".into(), json!(failure.is_none()));
    notebook.set_run_metadata(metadata);
    if rank.unwrap_or(0) == 0 {
        let output = options.output.as_ref().unwrap_or(&options.notebook);
        notebook.write(output)?;
        log(&format!("torchbook run: wrote {}", output.display()));
    }
    failure.map_or(Ok(()), Err)
}
