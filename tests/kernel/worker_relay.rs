//! The cell worker's output and stdin relays (kernel/src/worker/output.rs), driven as evcxr
//! drives them: the `torchbook` binary started as a worker, cells loaded with evcxr's
//! `LOAD_AND_RUN` command, then its command pipe closed. The worker must exit every time; a
//! worker that waits on its own stdin hangs evcxr's drop of its context, and with it
//! `torchbook build-prelude` and a kernel's shutdown.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a worker may take to exit once its command pipe is closed.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// A cell library as evcxr builds one: a `cdylib` exporting the function evcxr calls with its
/// variable store. This one prints a line and keeps the store as it is.
fn cell_library(dir: &Path) -> PathBuf {
    let source = dir.join("cell.rs");
    std::fs::write(
        &source,
        "#[no_mangle]\npub extern \"C\" fn run_cell(store: *mut u8) -> *mut u8 { println!(\"cell ran\"); store }\n",
    )
    .unwrap();
    let library = dir.join("libcell.so");
    let status = Command::new("rustc")
        .args(["--crate-type", "cdylib", "--edition", "2021", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "the test cell library compiles");
    library
}

/// Starts a worker, runs `cells` cells in it, waits `idle`, closes its command pipe and
/// returns how long it took to exit (`None`: it did not, and was killed).
fn run_and_drop(library: &Path, cells: usize, idle: Duration) -> Option<Duration> {
    let mut worker = Command::new(support::binary())
        .env("EVCXR_IS_RUNTIME", "1")
        .env("TORCHBOOK_PRELUDE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts");
    let mut commands = worker.stdin.take().unwrap();
    let mut output = BufReader::new(worker.stdout.take().unwrap());
    for _ in 0..cells {
        writeln!(commands, "LOAD_AND_RUN {} run_cell", library.display()).unwrap();
        let mut line = String::new();
        while line.trim_end() != "EVCXR_EXECUTION_COMPLETE" {
            line.clear();
            assert!(output.read_line(&mut line).unwrap() > 0, "the worker ended during a cell");
        }
    }
    std::thread::sleep(idle);
    let closed = Instant::now();
    drop(commands);
    // Keep reading, as evcxr does, so that a full stdout pipe cannot be what blocks it.
    std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    while closed.elapsed() < EXIT_WITHIN {
        if worker.try_wait().unwrap().is_some() {
            return Some(closed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = worker.kill();
    let _ = worker.wait();
    None
}

#[test]
fn a_worker_exits_when_evcxr_closes_its_commands_every_time() {
    let dir = support::temp_dir();
    let library = cell_library(&dir);
    let mut hung = Vec::new();
    let mut slowest = Duration::ZERO;
    for round in 0..50 {
        // Right after a cell (the runtime goes straight back to reading fd 0), after a pause
        // (already blocked in the read), and before any cell at all.
        let (cells, idle) = match round % 3 {
            0 => (1, Duration::ZERO),
            1 => (2, Duration::from_millis(150)),
            _ => (0, Duration::ZERO),
        };
        match run_and_drop(&library, cells, idle) {
            Some(took) => slowest = slowest.max(took),
            None => hung.push(round),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(hung.is_empty(), "workers still running {EXIT_WITHIN:?} after their command pipe closed, in rounds {hung:?}");
    eprintln!("slowest worker exit: {slowest:?}");
}
