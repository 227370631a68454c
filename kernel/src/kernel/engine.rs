//! The kernel's side of the engine: the engine process (`crate::engine`: evcxr, rust-analyzer and
//! the cell worker) started on demand, requests written to it and its events read back in
//! order ([`crate::wire::engine`]). If the engine process dies, the running cell fails with
//! `EngineDied` and the next request starts a fresh engine, so the kernel keeps serving.
//!
//! Keeping evcxr out of the kernel process keeps the process that holds the sockets small
//! (its rust-analyzer database alone is ≈ 800 MB) and lets the kernel outlive an engine crash.

use crate::trace::trace;
use crate::wire::cell_error::CellError;
use crate::wire::engine::{write_line, CellOutcome, Completions, EngineEvent, FromEngine, Inspection, ToEngine};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// Where the engine started for the nth time keeps evcxr's folder: `None` leaves the kernel's
/// `EVCXR_TMPDIR` as it is (see `WorkDir::engine_folder`).
pub type EngineFolder = Box<dyn Fn(u64) -> Option<PathBuf> + Send + Sync>;

/// An answer the kernel waits for, by request id.
enum Pending {
    Evaluate(oneshot::Sender<CellOutcome>),
    Complete(oneshot::Sender<Completions>),
    Inspect(oneshot::Sender<Inspection>),
}

/// One running engine process: our child, or a spare this kernel took over (`crate::spare`).
struct EngineProcess {
    requests: Box<dyn Write + Send>,
    /// Also its process group (both kinds are started in a group of their own).
    pid: u32,
    alive: Arc<AtomicBool>,
    /// A cell was sent and its `Finished` has not come back.
    cell_open: Arc<AtomicBool>,
    start: u64,
}

/// The connection to the engine process, shared by the engine handle, the worker handle and
/// the threads that read the engine's events.
struct Link {
    process: Mutex<Option<EngineProcess>>,
    events: UnboundedSender<EngineEvent>,
    pending: Mutex<HashMap<u64, (u64, Pending)>>,
    next_id: AtomicU64,
    starts: AtomicU64,
    folder: EngineFolder,
    /// Set once this kernel has started a spare for the next kernel.
    spare_started: AtomicBool,
}

impl Link {
    /// Sends a request, starting an engine first when none runs and `start` is set. False when
    /// the request could not be written.
    fn send(self: &Arc<Self>, request: &ToEngine, start: bool) -> bool {
        let mut process = self.process.lock().unwrap();
        if process.as_ref().is_some_and(|p| !p.alive.load(Ordering::SeqCst)) {
            *process = None;
        }
        if process.is_none() {
            if !start {
                return false;
            }
            match self.spawn() {
                Ok(started) => *process = Some(started),
                Err(e) => {
                    eprintln!("torchbook: cannot start the engine process: {e}");
                    return false;
                }
            }
        }
        let engine = process.as_mut().expect("started above");
        let written = write_line(&mut engine.requests, request).and_then(|()| engine.requests.flush());
        if written.is_err() {
            engine.alive.store(false, Ordering::SeqCst);
            return false;
        }
        if matches!(request, ToEngine::Execute { .. }) {
            engine.cell_open.store(true, Ordering::SeqCst);
        }
        true
    }

    fn spawn(self: &Arc<Self>) -> std::io::Result<EngineProcess> {
        let start = self.starts.fetch_add(1, Ordering::SeqCst);
        // A spare, when one waits: also after an engine died, when one is as good as new.
        if let Some(claimed) = crate::kernel::spare::claim() {
            let reply = &claimed.reply;
            trace(&format!("took spare engine {} ({})", reply.pid, if reply.warm { "warm" } else { "still warming up" }));
            let events = claimed.stream.try_clone()?;
            let ended = Ended::Disconnected { folder: reply.folder.clone() };
            // It is used up: this kernel may start the next one once this engine is warm.
            self.spare_started.store(false, Ordering::SeqCst);
            return self.connect(Box::new(claimed.stream), events, reply.pid, ended, start);
        }
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("engine").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // A group of its own, so that killing a stuck engine takes its cargo and rustc along.
        // (SIGINT to the kernel's group then no longer reaches it; the kernel forwards it.)
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        if let Some(folder) = (self.folder)(start) {
            command.env("EVCXR_TMPDIR", folder);
        }
        let mut child = command.spawn()?;
        trace(&format!("engine process {} started (start {start})", child.id()));
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let pid = child.id();
        self.connect(Box::new(stdin), stdout, pid, Ended::Child(child), start)
    }

    fn connect(
        self: &Arc<Self>,
        requests: Box<dyn Write + Send>,
        events: impl std::io::Read + Send + 'static,
        pid: u32,
        ended: Ended,
        start: u64,
    ) -> std::io::Result<EngineProcess> {
        let alive = Arc::new(AtomicBool::new(true));
        let cell_open = Arc::new(AtomicBool::new(false));
        let reader = Reader { link: self.clone(), ended, alive: alive.clone(), cell_open: cell_open.clone(), start };
        std::thread::Builder::new()
            .name("engine-reader".into())
            .spawn(move || reader.run(events))?;
        Ok(EngineProcess { requests, pid, alive, cell_open, start })
    }

    fn expect_answer(&self, pending: Pending) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let start = self.process.lock().unwrap().as_ref().map(|p| p.start).unwrap_or(self.starts.load(Ordering::SeqCst));
        self.pending.lock().unwrap().insert(id, (start, pending));
        id
    }

    /// The running engine process's pid (our child or a spare we took), if one runs.
    fn engine_pid(&self) -> Option<u32> {
        self.process.lock().unwrap().as_ref().filter(|p| p.alive.load(Ordering::SeqCst)).map(|p| p.pid)
    }

    /// Kills the engine process itself (a cell that even a killed worker did not end: evcxr or
    /// its analyser is stuck). Its reader then reports the cell as failed.
    fn kill_engine(&self) {
        if let Some(engine) = self.process.lock().unwrap().as_ref() {
            // SAFETY: signalling the engine's own process group.
            unsafe { libc::kill(-(engine.pid as libc::pid_t), libc::SIGKILL) };
        }
    }
}

/// How an engine's end is observed.
enum Ended {
    /// Our child: its exit status says how it ended.
    Child(Child),
    /// A spare we took: not our child, so only the connection closing says it ended; its
    /// folder is removed in case it could not do so itself.
    Disconnected { folder: PathBuf },
}

/// Reads one engine process's events until it ends.
struct Reader {
    link: Arc<Link>,
    ended: Ended,
    alive: Arc<AtomicBool>,
    cell_open: Arc<AtomicBool>,
    start: u64,
}

impl Reader {
    fn run(mut self, stdout: impl std::io::Read) {
        let events = &self.link.events;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let message = match serde_json::from_str::<FromEngine>(&line) {
                Ok(message) => message,
                Err(e) => {
                    eprintln!("torchbook: ignoring an engine message that does not parse ({e})");
                    continue;
                }
            };
            let answer = |id: u64| self.link.pending.lock().unwrap().remove(&id).map(|(_, p)| p);
            match message {
                FromEngine::Stdout { text } => drop(events.send(EngineEvent::Stdout(text))),
                FromEngine::Stderr { text } => drop(events.send(EngineEvent::Stderr(text))),
                FromEngine::Record { record } => drop(events.send(EngineEvent::Record(record))),
                FromEngine::Finished { outcome } => {
                    self.cell_open.store(false, Ordering::SeqCst);
                    let _ = events.send(EngineEvent::Finished(outcome));
                }
                FromEngine::InputRequest { prompt, password } => {
                    let (answer, reply) = std::sync::mpsc::channel();
                    let _ = events.send(EngineEvent::InputRequest { prompt, password, answer });
                    let link = self.link.clone();
                    std::thread::spawn(move || {
                        // A dropped sender (the request was abandoned) is end-of-file.
                        let value = reply.recv().ok().flatten();
                        link.send(&ToEngine::InputReply { value }, false);
                    });
                }
                FromEngine::Evaluated { id, outcome } => {
                    if let Some(Pending::Evaluate(reply)) = answer(id) {
                        let _ = reply.send(outcome);
                    }
                }
                FromEngine::Completed { id, completions } => {
                    if let Some(Pending::Complete(reply)) = answer(id) {
                        let _ = reply.send(completions);
                    }
                }
                FromEngine::Inspected { id, inspection } => {
                    if let Some(Pending::Inspect(reply)) = answer(id) {
                        let _ = reply.send(inspection);
                    }
                }
                FromEngine::Warm => {
                    if !self.link.spare_started.swap(true, Ordering::SeqCst) {
                        std::thread::spawn(crate::kernel::spare::start_spare);
                    }
                }
            }
        }
        self.alive.store(false, Ordering::SeqCst);
        let how = match &mut self.ended {
            Ended::Child(child) => match child.wait() {
                Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(signal)) => format!("killed by signal {signal}"),
                    _ => status.to_string(),
                },
                Err(e) => e.to_string(),
            },
            Ended::Disconnected { folder } => {
                let _ = std::fs::remove_dir_all(folder);
                "its connection closed".to_owned()
            }
        };
        eprintln!("torchbook: the engine process stopped ({how})");
        // Questions it will never answer get their default (their senders are dropped).
        self.link.pending.lock().unwrap().retain(|_, (start, _)| *start != self.start);
        if self.cell_open.swap(false, Ordering::SeqCst) {
            let _ = events.send(EngineEvent::Finished(CellOutcome::Failed(CellError::engine_died(&how))));
        }
    }
}

/// A handle on the worker process that can be used from any task (the control channel), and
/// which cell, if any, is running in it.
#[derive(Clone)]
pub struct WorkerHandle {
    link: Arc<Link>,
    /// The number of the running cell; 0 when idle.
    running: Arc<AtomicU64>,
    started: Arc<AtomicU64>,
    /// Counts interrupts, so that a wait for input can end on one.
    interrupts: Arc<tokio::sync::watch::Sender<u64>>,
}

impl WorkerHandle {
    fn cell_started(&self) {
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        self.running.store(number, Ordering::SeqCst);
    }

    fn cell_finished(&self) {
        self.running.store(0, Ordering::SeqCst);
    }

    /// Kills the worker; evcxr restarts it and the cell reports which variables were lost.
    /// Returns false when no engine runs.
    pub fn kill(&self) -> bool {
        self.link.send(&ToEngine::KillWorker, false)
    }

    /// Interrupts the running cell (DESIGN §3): SIGINT first, which the prelude turns into the
    /// flag that `fit` and `check_interrupt()` poll, so the cell stops and keeps its state; if the
    /// same cell is still running after `grace`, the worker is killed. If even that does not end
    /// it within [`ENGINE_GRACE`] (or `grace`, if longer), evcxr itself is stuck and the engine
    /// process is killed too. Does nothing when idle.
    pub fn interrupt(&self, grace: Duration) -> bool {
        self.interrupts.send_modify(|n| *n += 1);
        let cell = self.running.load(Ordering::SeqCst);
        if cell == 0 {
            return false;
        }
        self.link.send(&ToEngine::InterruptWorker, false);
        let handle = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            if handle.running.load(Ordering::SeqCst) == cell {
                handle.kill();
                std::thread::sleep(grace.max(ENGINE_GRACE));
                if handle.running.load(Ordering::SeqCst) == cell {
                    handle.link.kill_engine();
                }
            }
        });
        true
    }

    /// Kills the engine's process group (evcxr, the worker, any cargo or rustc) with SIGKILL, for
    /// a launcher told to stop at once.
    pub fn kill_engine(&self) {
        self.link.kill_engine();
    }

    /// The engine process's pid, while one runs (for `usage_request`).
    pub fn engine_pid(&self) -> Option<u32> {
        self.link.engine_pid()
    }

    /// Changes whenever an interrupt is requested.
    pub fn interrupt_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.interrupts.subscribe()
    }
}

/// How long evcxr may take, after the worker was killed, to start a new one and load the worker
/// setup again (a compile) before the engine counts as stuck.
pub const ENGINE_GRACE: Duration = Duration::from_secs(10);

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
    link: Arc<Link>,
    events: UnboundedReceiver<EngineEvent>,
    worker: WorkerHandle,
}

impl Engine {
    /// Starts the engine process; the worker and evcxr warm up in the background, and the first
    /// request waits for them. `folder` says where each start keeps evcxr's folder.
    pub fn start(folder: EngineFolder) -> Engine {
        let (event_tx, events) = unbounded_channel();
        let link = Arc::new(Link {
            process: Mutex::new(None),
            events: event_tx,
            pending: Default::default(),
            next_id: AtomicU64::new(1),
            starts: AtomicU64::new(0),
            folder,
            spare_started: AtomicBool::new(false),
        });
        {
            let mut process = link.process.lock().unwrap();
            match link.spawn() {
                Ok(started) => *process = Some(started),
                // Reported again, to the user, by the first request's own attempt.
                Err(e) => eprintln!("torchbook: cannot start the engine process: {e}"),
            }
        }
        let worker = WorkerHandle {
            link: link.clone(),
            running: Default::default(),
            started: Default::default(),
            interrupts: Arc::new(tokio::sync::watch::channel(0).0),
        };
        Engine { link, events, worker }
    }

    pub fn worker(&self) -> WorkerHandle {
        self.worker.clone()
    }

    /// Queues a cell; its output and outcome arrive through [`Engine::next_event`].
    pub fn execute(&self, code: &str) {
        self.worker.cell_started();
        let replacing = self.link.starts.load(Ordering::SeqCst) > 0
            && !self.link.process.lock().unwrap().as_ref().is_some_and(|p| p.alive.load(Ordering::SeqCst));
        if replacing {
            let note = "torchbook: starting a fresh Rust engine (the previous one stopped); this cell waits for it\n";
            let _ = self.link.events.send(EngineEvent::Stderr(note.to_owned()));
        }
        if !self.link.send(&ToEngine::Execute { code: code.to_owned() }, true) {
            let error = CellError::engine_unavailable("the engine process could not be started or reached");
            let _ = self.link.events.send(EngineEvent::Finished(CellOutcome::Failed(error)));
        }
    }

    /// The next event; `None` means the kernel is shutting down.
    pub async fn next_event(&mut self) -> Option<EngineEvent> {
        let event = self.events.recv().await;
        if matches!(event, Some(EngineEvent::Finished(_)) | None) {
            self.worker.cell_finished();
        }
        event
    }

    /// Sends a question and waits for its answer; `None` when the engine cannot answer.
    async fn ask<T>(&self, pending: impl FnOnce(oneshot::Sender<T>) -> Pending, request: impl FnOnce(u64) -> ToEngine) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let id = self.link.expect_answer(pending(reply));
        if !self.link.send(&request(id), true) {
            self.link.pending.lock().unwrap().remove(&id);
            return None;
        }
        answer.await.ok()
    }

    /// Evaluates one expression in the session (for `user_expressions`).
    pub async fn evaluate(&self, expression: &str) -> CellOutcome {
        let expression = expression.to_owned();
        self.ask(Pending::Evaluate, |id| ToEngine::Evaluate { id, expression })
            .await
            .unwrap_or_else(|| CellOutcome::Failed(CellError::engine_unavailable("the engine process stopped")))
    }

    /// Hover information and the variable's type for the name ending at `byte_pos`.
    pub async fn inspect(&self, code: &str, byte_pos: usize) -> Inspection {
        let code = code.to_owned();
        self.ask(Pending::Inspect, |id| ToEngine::Inspect { id, code, byte_pos }).await.unwrap_or_default()
    }

    pub async fn complete(&self, code: &str, byte_pos: usize) -> Completions {
        let code = code.to_owned();
        let empty = Completions { matches: Vec::new(), start: byte_pos, end: byte_pos };
        self.ask(Pending::Complete, |id| ToEngine::Complete { id, code, byte_pos }).await.unwrap_or(empty)
    }
}
