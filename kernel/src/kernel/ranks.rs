//! `:ranks N`, ipyparallel's `%%px` for data-parallel training on one machine: the kernel starts
//! N−1 more engines as ranks 1…N−1, every rank joins one process group (rank 0 hosts the store on
//! 127.0.0.1), and every following cell runs on all of them — rank 0's output is shown, any
//! other rank's error is shown with its rank. `:ranks 1` leaves the group and stops the extra
//! engines. The extra engines live in tasks of their own, so that the shell handler keeps
//! streaming rank 0's output while they run.

use crate::kernel::engine::{Engine, EngineFolder, WorkerHandle};
use crate::run::cell::{run_cell, CellRun};
use crate::wire::cell_error::CellError;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Where rank k's engine keeps evcxr's folder (`WorkDir::rank_engine_folders`).
pub type RankFolders = Arc<dyn Fn(usize) -> EngineFolder + Send + Sync>;

/// The extra ranks' workers, shared with whatever interrupts cells (control channel, signals).
pub type ExtraWorkers = Arc<Mutex<Vec<WorkerHandle>>>;

/// How long ranks wait for each other in the process group (joining, and every collective).
const GROUP_TIMEOUT_SECONDS: u64 = 120;

/// What a cell that starts with `:ranks` asks for.
pub fn parse_command(code: &str) -> Option<Result<usize, String>> {
    let line = code.trim();
    let rest = line.strip_prefix(":ranks")?;
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    let usage = "usage: `:ranks N` runs the following cells on N data-parallel ranks (N ≥ 1; `:ranks 1` returns to one engine)";
    Some(match rest.trim().parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        Ok(n) => Err(format!("`:ranks {n}`: expected 1 to 64 ranks; {usage}")),
        Err(_) if rest.trim().is_empty() => Err(usage.to_owned()),
        Err(_) => Err(format!("`:ranks {}`: not a number; {usage}", rest.trim())),
    })
}

/// The code each rank runs to join the group.
pub fn join_code(rank: usize, world_size: usize, port: u16) -> String {
    // LOCAL_RANK first: `Device::best()` gives each rank its own GPU, as under torchrun.
    format!(
        "// SAFETY: before anything in this worker reads the environment concurrently.\n\
         #[allow(unused_unsafe)] unsafe {{ std::env::set_var(\"LOCAL_RANK\", \"{rank}\") }};\ntorchbook::distributed::init(&::torchbook::distributed::GroupConfig::new(\"127.0.0.1\", {port}, {rank}, {world_size})\
         .timeout(::std::time::Duration::from_secs({GROUP_TIMEOUT_SECONDS}))\
         .backend(::torchbook::distributed::default_backend()).device({rank}))?;"
    )
}

pub const LEAVE_CODE: &str = "torchbook::distributed::destroy();";

struct ExtraRank {
    rank: usize,
    cells: mpsc::UnboundedSender<(String, oneshot::Sender<CellRun>)>,
    worker: WorkerHandle,
}

/// The extra engines of a kernel (none until `:ranks N` with N > 1).
pub struct Ranks {
    extra: Vec<ExtraRank>,
    folders: Option<RankFolders>,
    workers: ExtraWorkers,
}

/// An extra rank's cell, on its way.
pub struct Pending(Vec<(usize, oneshot::Receiver<CellRun>)>);

impl Ranks {
    pub fn new(folders: Option<RankFolders>, workers: ExtraWorkers) -> Ranks {
        Ranks { extra: Vec::new(), folders, workers }
    }

    pub fn world_size(&self) -> usize {
        self.extra.len() + 1
    }

    /// Starts the engines of ranks 1…n−1 (they warm up while rank 0 runs its join cell).
    pub fn start(&mut self, n: usize) -> Result<(), String> {
        let folders = self.folders.clone().ok_or("this kernel cannot start more engines (it has no working folder of its own)")?;
        for rank in 1..n {
            let mut engine = Engine::start(folders(rank));
            let worker = engine.worker();
            let (cells, mut incoming) = mpsc::unbounded_channel::<(String, oneshot::Sender<CellRun>)>();
            tokio::spawn(async move {
                while let Some((code, done)) = incoming.recv().await {
                    let _ = done.send(run_cell(&mut engine, &code, 0).await);
                }
                engine.worker().kill_engine();
            });
            self.workers.lock().unwrap().push(worker.clone());
            self.extra.push(ExtraRank { rank, cells, worker });
        }
        Ok(())
    }

    /// Sends a cell to every extra rank; `code_for` gives each rank's code.
    pub fn send(&self, code_for: impl Fn(usize) -> String) -> Pending {
        let mut pending = Vec::new();
        for extra in &self.extra {
            let (done, result) = oneshot::channel();
            if extra.cells.send((code_for(extra.rank), done)).is_ok() {
                pending.push((extra.rank, result));
            }
        }
        Pending(pending)
    }

    /// Interrupts every extra rank's running cell (rank 0 failed: they would wait for it in
    /// their next collective until the timeout).
    pub fn interrupt(&self, grace: std::time::Duration) {
        for extra in &self.extra {
            extra.worker.interrupt(grace);
        }
    }

    /// Stops the extra engines (their tasks end and kill them).
    pub fn stop(&mut self) {
        self.extra.clear();
        self.workers.lock().unwrap().clear();
    }
}

impl Pending {
    /// Waits for every extra rank; the first error, marked with its rank.
    pub async fn first_error(self) -> Option<CellError> {
        let mut first = None;
        for (rank, result) in self.0 {
            let error = match result.await {
                Ok(run) => run.error,
                Err(_) => Some(CellError::engine_died("the rank's engine task stopped")),
            };
            if let (None, Some(error)) = (&first, error) {
                first = Some(on_rank(rank, error));
            }
        }
        first
    }
}

fn on_rank(rank: usize, mut error: CellError) -> CellError {
    error.evalue = format!("rank {rank}: {}", error.evalue);
    error.traceback.insert(0, format!("On rank {rank}:"));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_parsed_with_clear_errors() {
        assert_eq!(parse_command(":ranks 2"), Some(Ok(2)));
        assert_eq!(parse_command("  :ranks 1\n"), Some(Ok(1)));
        assert_eq!(parse_command("let x = 1;"), None);
        assert_eq!(parse_command(":ranksx 2"), None);
        assert!(parse_command(":ranks").unwrap().unwrap_err().contains("usage"));
        assert!(parse_command(":ranks two").unwrap().unwrap_err().contains("not a number"));
        assert!(parse_command(":ranks 0").unwrap().unwrap_err().contains("1 to 64"));
    }

    #[test]
    fn join_code_names_rank_world_and_port() {
        let code = join_code(1, 2, 29500);
        assert!(code.contains("GroupConfig::new(\"127.0.0.1\", 29500, 1, 2)"), "{code}");
    }
}
