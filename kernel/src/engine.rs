//! The engine: evcxr's `CommandContext` on a thread of its own, and the forwarder that turns the
//! worker's output into an ordered stream of [`EngineEvent`]s for the execute handler.
//!
//! Ordering matters: evcxr hands us stdout lines on one channel and returns from `execute` only
//! once that channel is drained. The engine thread therefore does not report a cell's outcome
//! itself; it passes it to the forwarder thread, which has already forwarded every stdout line
//! it took, drains what is left, and only then emits [`EngineEvent::Finished`]. What runs a
//! cell inside evcxr is in [`crate::session`].

use crate::cell_error::CellError;
use crate::prelude::{PreludeConfig, PreludeUnavailable};
use crate::session::{FinalValue, Session};
use crate::side_channel::{self, Record};
use crossbeam_channel::{select, Receiver};
use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What a cell produced once it finished: its value by MIME type, or an error for the user.
#[derive(Debug)]
pub enum CellOutcome {
    Value(HashMap<String, String>),
    Failed(CellError),
}

/// One thing the engine reports, in the order the user should see it.
#[derive(Debug)]
pub enum EngineEvent {
    Stdout(String),
    Stderr(String),
    Record(Record),
    /// The cell waits for a line of input; send `None` for end-of-file (no input to give).
    InputRequest {
        prompt: String,
        password: bool,
        answer: std::sync::mpsc::Sender<Option<String>>,
    },
    Finished(CellOutcome),
}

/// Completion candidates from evcxr's analyser, with the byte range they replace.
#[derive(Debug, Default)]
pub struct Completions {
    pub matches: Vec<String>,
    pub start: usize,
    pub end: usize,
}

enum EngineRequest {
    Execute(String),
    /// An expression evaluated for its value alone (`user_expressions`), outside the output
    /// stream of a cell.
    Evaluate {
        expression: String,
        reply: tokio::sync::oneshot::Sender<CellOutcome>,
    },
    Complete {
        code: String,
        byte_pos: usize,
        reply: tokio::sync::oneshot::Sender<Completions>,
    },
    Inspect {
        code: String,
        byte_pos: usize,
        reply: tokio::sync::oneshot::Sender<Inspection>,
    },
}

/// What the analyser and the session know about the name at a position.
#[derive(Debug, Default)]
pub struct Inspection {
    /// rust-analyzer's hover: signature and docs, as text and HTML.
    pub hover: Option<(String, String)>,
    /// The type, when the name is a variable of the session.
    pub variable_type: Option<String>,
}

/// A handle on the worker process that can be used from any task (the control channel), and
/// which cell, if any, is running in it.
#[derive(Clone)]
pub struct WorkerHandle {
    child: Arc<OnceLock<Arc<Mutex<Child>>>>,
    /// The number of the running cell; 0 when idle.
    running: Arc<AtomicU64>,
    started: Arc<AtomicU64>,
    /// Counts interrupts, so that a wait for input can end on one.
    interrupts: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for WorkerHandle {
    fn default() -> Self {
        WorkerHandle {
            child: Default::default(),
            running: Default::default(),
            started: Default::default(),
            interrupts: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl WorkerHandle {
    fn cell_started(&self) {
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        self.running.store(number, Ordering::SeqCst);
    }

    fn cell_finished(&self) {
        self.running.store(0, Ordering::SeqCst);
    }

    fn pid(&self) -> Option<libc::pid_t> {
        let child = self.child.get()?;
        let pid = child.lock().ok()?.id();
        Some(pid as libc::pid_t)
    }

    /// Kills the worker; evcxr restarts it and the cell reports which variables were lost.
    /// Returns false when no worker has started yet.
    pub fn kill(&self) -> bool {
        let Some(child) = self.child.get() else {
            return false;
        };
        let killed = child.lock().map(|mut c| c.kill().is_ok()).unwrap_or(false);
        killed
    }

    /// Interrupts the running cell (DESIGN §3): SIGINT first, which the prelude turns into the
    /// flag that `fit` and `check_interrupt()` poll, so the cell stops and keeps its state; if the
    /// same cell is still running after `grace`, the worker is killed. Does nothing when idle.
    pub fn interrupt(&self, grace: Duration) -> bool {
        self.interrupts.send_modify(|n| *n += 1);
        let cell = self.running.load(Ordering::SeqCst);
        if cell == 0 {
            return false;
        }
        if let Some(pid) = self.pid() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let handle = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            if handle.running.load(Ordering::SeqCst) == cell {
                handle.kill();
            }
        });
        true
    }
}

impl WorkerHandle {
    /// Changes whenever an interrupt is requested.
    pub fn interrupt_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.interrupts.subscribe()
    }
}

/// How long a cell may take to honour an interrupt before its worker is killed
/// (`TORCHBOOK_INTERRUPT_GRACE_MS`, default 3000).
pub fn interrupt_grace() -> Duration {
    let ms = std::env::var("TORCHBOOK_INTERRUPT_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    Duration::from_millis(ms)
}

/// The kernel's side of the engine.
pub struct Engine {
    requests: std::sync::mpsc::Sender<EngineRequest>,
    events: UnboundedReceiver<EngineEvent>,
    worker: WorkerHandle,
}

/// Rust run once in every fresh worker: it routes panics to the side channel so that the kernel
/// can report them as errors (evcxr catches the unwind and would otherwise report success).
pub(crate) const WORKER_SETUP: &str = include_str!("worker_setup.rs");

impl Engine {
    /// Starts the engine thread; the worker and evcxr warm up in the background, and the first
    /// request waits for them.
    pub fn start() -> Engine {
        let (requests, request_rx) = std::sync::mpsc::channel();
        let (event_tx, events) = unbounded_channel();
        let worker = WorkerHandle::default();
        let worker_for_thread = worker.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || run_engine(request_rx, event_tx, worker_for_thread))
            .expect("spawn engine thread");
        Engine {
            requests,
            events,
            worker,
        }
    }

    pub fn worker(&self) -> WorkerHandle {
        self.worker.clone()
    }

    /// Queues a cell; its output and outcome arrive through [`Engine::next_event`].
    pub fn execute(&self, code: &str) {
        self.worker.cell_started();
        // A send fails only when the engine thread has died, which `next_event` reports.
        let _ = self.requests.send(EngineRequest::Execute(code.to_owned()));
    }

    /// The next event; `None` means the engine thread is gone.
    pub async fn next_event(&mut self) -> Option<EngineEvent> {
        let event = self.events.recv().await;
        if matches!(event, Some(EngineEvent::Finished(_)) | None) {
            self.worker.cell_finished();
        }
        event
    }

    /// Evaluates one expression in the session (for `user_expressions`).
    pub async fn evaluate(&self, expression: &str) -> CellOutcome {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = EngineRequest::Evaluate { expression: expression.to_owned(), reply };
        if self.requests.send(request).is_err() {
            return CellOutcome::Failed(CellError::engine_unavailable("the engine thread stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| CellOutcome::Failed(CellError::engine_unavailable("the engine thread stopped")))
    }

    /// Hover information and the variable's type for the name ending at `byte_pos`.
    pub async fn inspect(&self, code: &str, byte_pos: usize) -> Inspection {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = EngineRequest::Inspect {
            code: code.to_owned(),
            byte_pos,
            reply,
        };
        if self.requests.send(request).is_err() {
            return Inspection::default();
        }
        answer.await.unwrap_or_default()
    }

    pub async fn complete(&self, code: &str, byte_pos: usize) -> Completions {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = EngineRequest::Complete {
            code: code.to_owned(),
            byte_pos,
            reply,
        };
        if self.requests.send(request).is_err() {
            return Completions::default();
        }
        answer.await.unwrap_or_default()
    }
}

fn run_engine(
    requests: std::sync::mpsc::Receiver<EngineRequest>,
    events: UnboundedSender<EngineEvent>,
    worker: WorkerHandle,
) {
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<CellOutcome>();
    let note = |line: String| {
        let _ = events.send(EngineEvent::Stderr(line));
    };
    let begun = std::time::Instant::now();
    let prelude = prepare_prelude(&events);
    trace(&format!("prelude cache prepared in {:?}", begun.elapsed()));
    let started = evcxr::CommandContext::new();
    trace(&format!("evcxr worker started after {:?}", begun.elapsed()));
    let mut session = match started {
        Ok((context, outputs)) => {
            let _ = worker.child.set(context.process_handle());
            let forward_events = events.clone();
            std::thread::Builder::new()
                .name("engine-output".into())
                .spawn(move || forward_output(outputs, done_rx, forward_events))
                .expect("spawn output thread");
            Some(Session::start(context, prelude, events.clone(), &note))
        }
        Err(e) => {
            eprintln!("torchbook: the Rust engine could not start: {e}");
            drop(done_rx);
            let reason = e.to_string();
            // Without evcxr every cell gets the same clear error; the kernel itself stays up.
            for request in requests.iter() {
                let error = CellError::engine_unavailable(&reason);
                match request {
                    EngineRequest::Execute(_) => {
                        let _ = events.send(EngineEvent::Finished(CellOutcome::Failed(error)));
                    }
                    EngineRequest::Evaluate { reply, .. } => {
                        let _ = reply.send(CellOutcome::Failed(error));
                    }
                    EngineRequest::Complete { .. } | EngineRequest::Inspect { .. } => {}
                }
            }
            None
        }
    };
    let Some(session) = session.as_mut() else {
        return;
    };
    // A kernel is usually idle for a while after it starts (the user reads, types): use that
    // time for the first-use costs a tch cell would otherwise pay. A request that is already
    // waiting goes first, and skips the warm-up.
    let waiting = match requests.try_recv() {
        Ok(request) => Some(request),
        Err(std::sync::mpsc::TryRecvError::Empty) => {
            session.warm_up();
            None
        }
        Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
    };
    for request in waiting.into_iter().chain(requests.iter()) {
        match request {
            EngineRequest::Execute(code) => {
                let outcome = session.execute_cell(&code, FinalValue::ThroughPrelude);
                if done_tx.send(outcome).is_err() {
                    return;
                }
            }
            EngineRequest::Evaluate { expression, reply } => {
                let _ = reply.send(session.execute_cell(&expression, FinalValue::ThroughEvcxr));
            }
            EngineRequest::Complete {
                code,
                byte_pos,
                reply,
            } => {
                let completions = match session.context.completions(&code, byte_pos) {
                    Ok(c) => Completions {
                        matches: c.completions.into_iter().map(|c| c.code).collect(),
                        start: c.start_offset,
                        end: c.end_offset,
                    },
                    Err(_) => Completions {
                        matches: Vec::new(),
                        start: byte_pos,
                        end: byte_pos,
                    },
                };
                let _ = reply.send(completions);
            }
            EngineRequest::Inspect { code, byte_pos, reply } => {
                let _ = reply.send(session.inspect(&code, byte_pos));
            }
        }
    }
}

/// Finds or builds the prelude cache and seeds this kernel's evcxr folder from it. Returns the
/// configuration when the prelude can be loaded; otherwise says why (once, in the first cell).
fn prepare_prelude(events: &UnboundedSender<EngineEvent>) -> Option<PreludeConfig> {
    let say = |line: String| {
        let _ = events.send(EngineEvent::Stderr(line));
    };
    let config = match PreludeConfig::from_env() {
        Ok(config) => config,
        Err(PreludeUnavailable::Disabled) => return None,
        Err(why) => {
            say(format!("torchbook: running plain Rust without the tch prelude: {why}"));
            return None;
        }
    };
    let cache = config.cache_dir();
    if !cache.exists() {
        if let Err(e) = build_prelude_in_subprocess(events) {
            say(format!("torchbook: the prelude could not be built, so cells run plain Rust: {e}"));
            return None;
        }
    }
    let workdir = std::env::var_os("EVCXR_TMPDIR").map(std::path::PathBuf::from);
    match workdir {
        Some(dir) => match crate::prelude::seed(&cache, &dir) {
            Ok(()) => Some(config),
            Err(e) => {
                say(format!("torchbook: could not copy the prelude cache ({e}); it will be rebuilt in this session"));
                Some(config)
            }
        },
        None => Some(config),
    }
}

/// Runs `torchbook build-prelude`, streaming its progress lines into the first cell's output.
fn build_prelude_in_subprocess(events: &UnboundedSender<EngineEvent>) -> Result<(), String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .arg("build-prelude")
        .env_remove("EVCXR_TMPDIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let lines: Vec<String> = std::io::BufReader::new(stderr).lines().map_while(Result::ok).collect();
        lines
    });
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        let _ = events.send(EngineEvent::Stderr(line));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let errors = errors.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<&String> = errors.iter().rev().take(15).collect();
        Err(tail.into_iter().rev().map(String::as_str).collect::<Vec<_>>().join("\n"))
    }
}

/// Timings of the engine's phases on stderr (the kernel's log) when `TORCHBOOK_TRACE` is set:
/// the first thing to look at when a cell is slow.
pub fn trace(what: &str) {
    if std::env::var_os("TORCHBOOK_TRACE").is_some() {
        eprintln!("torchbook trace [{:>6} ms]: {what}", PROCESS_START.elapsed().as_millis());
    }
}

/// The reference for [`trace`]'s timestamps; forced by `main` as soon as the kernel starts.
pub static PROCESS_START: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);

/// Moves worker output into the event stream until the engine goes away.
fn forward_output(
    outputs: evcxr::EvalContextOutputs,
    done: Receiver<CellOutcome>,
    events: UnboundedSender<EngineEvent>,
) {
    let send_stdout = |line: String| {
        let event = match side_channel::parse(&line) {
            Some(record) => EngineEvent::Record(record),
            None => EngineEvent::Stdout(line),
        };
        events.send(event).is_ok()
    };
    // The worker's stderr relay sends text without a newline as records too.
    let send_stderr = |line: String| {
        let event = match side_channel::parse(&line) {
            Some(record) => EngineEvent::Record(record),
            None => EngineEvent::Stderr(line),
        };
        events.send(event).is_ok()
    };
    loop {
        let alive = select! {
            recv(outputs.stdout) -> line => line.map(|l| send_stdout(l)).unwrap_or(false),
            recv(outputs.stderr) -> line => line.map(|l| send_stderr(l)).unwrap_or(false),
            recv(done) -> outcome => match outcome {
                Ok(outcome) => {
                    drain(&outputs.stdout, Duration::ZERO, &send_stdout);
                    // The worker's stderr is read by another thread: give lines written just
                    // before the cell ended a moment to arrive, so they stay with their cell.
                    drain(&outputs.stderr, Duration::from_millis(3), &send_stderr);
                    events.send(EngineEvent::Finished(outcome)).is_ok()
                }
                Err(_) => false,
            },
        };
        if !alive {
            return;
        }
    }
}

fn drain(source: &Receiver<String>, linger: Duration, send: &dyn Fn(String) -> bool) {
    loop {
        let next = if linger.is_zero() {
            source.try_recv().ok()
        } else {
            source.recv_timeout(linger).ok()
        };
        match next {
            Some(line) => {
                send(line);
            }
            None => return,
        }
    }
}
