//! The engine process (`torchbook engine`, started by the kernel): evcxr's `CommandContext`,
//! its rust-analyzer database and the cell worker live here, so that the kernel process that
//! holds the sockets stays small and survives whatever happens to them. It talks to the kernel
//! over its stdin and stdout ([`crate::wire::engine`]) and ends when its stdin closes.
//!
//! Inside, evcxr runs on the main thread and a forwarder turns the worker's output into an
//! ordered stream of [`EngineEvent`]s. Ordering matters: evcxr hands us stdout lines on one
//! channel and returns from `execute` only once that channel is drained. The engine thread
//! therefore does not report a cell's outcome itself; it passes it to the forwarder thread,
//! which has already forwarded every stdout line it took, drains what is left, and only then
//! emits [`EngineEvent::Finished`]. What runs a cell inside evcxr is in [`crate::engine::session`].


pub mod annotate;
pub mod cargo_metadata;
pub mod cell_build;
pub mod cell_link;
pub mod compile_error;
pub mod final_value;
pub mod parameters;
pub mod rust_src;
pub mod session;
pub mod spare;
pub mod type_probe;
pub mod variable_store;

use crate::wire::cell_error::CellError;
use crate::trace::trace;
use crate::wire::engine::{CellOutcome, Completions, EngineEvent, Inspection};
use crate::wire::engine::{write_line, FromEngine, ToEngine};
use crate::prelude::{PreludeConfig, PreludeUnavailable};
use crate::engine::session::{FinalValue, Session};
use crate::wire::side_channel;
use crossbeam_channel::{select, Receiver};
use std::io::{BufRead, Write};
use std::process::Child;
use std::sync::mpsc::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};


/// Runs the engine process until the kernel closes its stdin. Call first thing in the process:
/// it rearranges the standard descriptors.
pub fn run() -> i32 {
    crate::trace::IN_ENGINE.store(true, std::sync::atomic::Ordering::Relaxed);
    // The kernel put its first engine's folder on the loader's path; an engine started after
    // one died has a folder of its own (`WorkDir::engine_folder`), whose worker must find the
    // prelude's shared library there.
    crate::prelude::prepare_library_path();
    rust_src::start_view();
    let (requests_in, protocol) = take_standard_streams();
    serve(Connection::Kernel {
        reader: Box::new(std::io::BufReader::new(requests_in)),
        writer: Box::new(protocol),
    })
}

/// Runs a spare engine (`torchbook spare`, see [`crate::spare`]): loads everything, waits for a
/// kernel to take it over its socket, then serves that kernel as [`run`] does. Exits at once
/// when a spare with the same key already runs, and once any of `owners` has ended.
pub fn run_spare(owners: &[u32]) -> i32 {
    crate::trace::IN_ENGINE.store(true, std::sync::atomic::Ordering::Relaxed);
    crate::wire::spare::remember_original();
    let waiting = match crate::engine::spare::Waiting::open() {
        Ok(Some(waiting)) => waiting,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("torchbook spare: cannot listen: {e}");
            return 1;
        }
    };
    // A folder of our own, as a kernel makes one (evcxr's crate, the cell toolchain).
    let folder = match crate::workdir::WorkDir::create() {
        Ok(folder) => folder,
        Err(e) => {
            eprintln!("torchbook spare: cannot create a working folder: {e}");
            return 1;
        }
    };
    crate::prelude::prepare_library_path();
    rust_src::start_view();
    serve(Connection::Spare { waiting, folder: folder.path().to_owned(), owners: owners.to_vec() })
}

/// Where the kernel's requests come from.
enum Connection {
    /// Started by the kernel: stdin and stdout.
    Kernel {
        reader: Box<dyn BufRead + Send>,
        writer: Box<dyn Write + Send>,
    },
    /// A spare: whichever kernel claims it, over its socket. `folder` is ours to remove.
    Spare {
        waiting: crate::engine::spare::Waiting,
        folder: std::path::PathBuf,
        owners: Vec<u32>,
    },
}

fn serve(connection: Connection) -> i32 {
    // Interrupts come from the kernel as requests; a SIGINT sent here directly must not end
    // the session. A handler (not SIG_IGN) is reset in the programs we start, so cargo and
    // rustc keep the default action.
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: an empty handler is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, ignore as *const () as libc::sighandler_t) };

    let (out, queued) = std::sync::mpsc::channel::<FromEngine>();
    let worker = WorkerProcess::default();
    let (requests, request_rx) = std::sync::mpsc::channel();
    let (event_tx, mut event_rx) = unbounded_channel::<EngineEvent>();
    let waiting_for_input: Arc<Mutex<Option<Sender<Option<String>>>>> = Default::default();

    let (pump_out, pump_input) = (out.clone(), waiting_for_input.clone());
    std::thread::Builder::new()
        .name("engine-events".into())
        .spawn(move || {
            while let Some(event) = event_rx.blocking_recv() {
                let message = match event {
                    EngineEvent::Stdout(text) => FromEngine::Stdout { text },
                    EngineEvent::Stderr(text) => FromEngine::Stderr { text },
                    EngineEvent::Record(record) => FromEngine::Record { record },
                    EngineEvent::Finished(outcome) => FromEngine::Finished { outcome },
                    EngineEvent::InputRequest { prompt, password, answer } => {
                        *pump_input.lock().unwrap() = Some(answer);
                        FromEngine::InputRequest { prompt, password }
                    }
                };
                if pump_out.send(message).is_err() {
                    return;
                }
            }
        })
        .expect("spawn events thread");

    let warm = Arc::new(AtomicBool::new(false));
    // Locked while the ready file is written, so that a claim cannot slip in between the check
    // and the write and leave a ready file for an engine that is taken.
    let claimed = Arc::new(Mutex::new(false));
    let ready_file = match &connection {
        Connection::Spare { waiting, .. } => Some(waiting.ready_path()),
        Connection::Kernel { .. } => None,
    };
    // Called after the warm-up and after each request. A spare that nobody took yet only
    // says it is ready; a kernel's engine tells the kernel once, after the warm-up or its
    // first cell, that the next spare may start without slowing that cell down.
    let on_warm = {
        let (out, warm, claimed) = (out.clone(), warm.clone(), claimed.clone());
        let told = AtomicBool::new(false);
        move || {
            let claimed = claimed.lock().unwrap();
            if !warm.swap(true, Ordering::SeqCst) {
                if let (Some(path), false) = (&ready_file, *claimed) {
                    let _ = std::fs::write(path, std::process::id().to_string());
                    return;
                }
            }
            if (ready_file.is_none() || *claimed) && !told.swap(true, Ordering::SeqCst) {
                let _ = out.send(FromEngine::Warm);
            }
        }
    };

    let reader_worker = worker.clone();
    let adopt = requests.clone();
    std::thread::Builder::new()
        .name("engine-requests".into())
        .spawn(move || {
            let (reader, writer, folder) = match connection {
                Connection::Kernel { reader, writer } => (reader, writer, None),
                Connection::Spare { waiting, folder, owners } => {
                    // Called once a claim is read, before the ready file is removed.
                    let reply = || {
                        *claimed.lock().unwrap() = true;
                        crate::wire::spare::ClaimReply {
                            pid: std::process::id(),
                            folder: folder.clone(),
                            warm: warm.load(Ordering::SeqCst),
                        }
                    };
                    let Some(claim) = waiting.wait(crate::engine::spare::idle_limit(), &owners, reply) else {
                        trace("nobody took this spare engine; exiting");
                        end_engine(&reader_worker, Some(&folder));
                    };
                    trace(&format!("taken by kernel {}", claim.request.kernel_pid));
                    let kernel = claim.request.original;
                    let _ = std::env::set_current_dir(&kernel.cwd);
                    let cell = crate::engine::spare::adoption_cell(&crate::engine::spare::original_of_this_process(), &kernel);
                    let _ = adopt.send(EngineRequest::Adopt(cell));
                    let reader: Box<dyn BufRead + Send> = Box::new(claim.reader);
                    let writer: Box<dyn Write + Send> = Box::new(claim.writer);
                    (reader, writer, Some(folder))
                }
            };
            std::thread::Builder::new()
                .name("engine-writer".into())
                .spawn(move || write_messages(writer, queued))
                .expect("spawn writer thread");
            for line in reader.lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ToEngine>(&line) {
                    Ok(request) => take_request(request, &requests, &out, &waiting_for_input, &reader_worker),
                    Err(e) => eprintln!("torchbook engine: ignoring a request that does not parse ({e})"),
                }
            }
            // The kernel is gone (or shutting down): take the worker along.
            end_engine(&reader_worker, folder.as_deref());
        })
        .expect("spawn requests thread");

    run_engine(request_rx, event_tx, worker, Box::new(on_warm));
    0
}

/// Ends the engine process: the worker goes too, and a spare's own folder is removed.
fn end_engine(worker: &WorkerProcess, folder: Option<&std::path::Path>) -> ! {
    worker.kill();
    if let Some(folder) = folder {
        let _ = std::fs::remove_dir_all(folder);
    }
    std::process::exit(0);
}

/// The protocol's input and output: the process's stdin and stdout, moved to descriptors that
/// the programs we start do not inherit (a worker or a rustc holding them would hide our death
/// from the kernel). Standard input then reads nothing and standard output goes to stderr, so a
/// stray print cannot break the protocol.
fn take_standard_streams() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: duplicating this process's standard descriptors before any other thread runs.
    unsafe {
        let input = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        let output = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        assert!(input >= 0 && output >= 0, "cannot duplicate stdin/stdout: {}", std::io::Error::last_os_error());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
        libc::dup2(2, 1);
        (std::fs::File::from_raw_fd(input), std::fs::File::from_raw_fd(output))
    }
}

/// Writes messages as they come, flushing when none is waiting (output of 10,000 lines becomes
/// a few writes). Ends the process when the kernel stops reading.
fn write_messages(protocol: Box<dyn Write + Send>, queued: std::sync::mpsc::Receiver<FromEngine>) {
    let mut out = std::io::BufWriter::new(protocol);
    while let Ok(message) = queued.recv() {
        let mut written = write_line(&mut out, &message);
        while let (Ok(()), Ok(message)) = (&written, queued.try_recv()) {
            written = write_line(&mut out, &message);
        }
        if written.and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
    }
}

fn take_request(
    request: ToEngine,
    requests: &Sender<EngineRequest>,
    out: &Sender<FromEngine>,
    waiting_for_input: &Mutex<Option<Sender<Option<String>>>>,
    worker: &WorkerProcess,
) {
    // Answers come from the engine thread; a thread per question keeps this reader free for
    // interrupts and input replies (they are rare: inspection, completion, user_expressions).
    fn answer<T: Send + 'static>(
        out: &Sender<FromEngine>,
        reply: tokio::sync::oneshot::Receiver<T>,
        message: impl FnOnce(Option<T>) -> FromEngine + Send + 'static,
    ) {
        let out = out.clone();
        std::thread::spawn(move || {
            let _ = out.send(message(reply.blocking_recv().ok()));
        });
    }
    let stopped = || CellOutcome::Failed(CellError::engine_unavailable("the engine thread stopped"));
    match request {
        ToEngine::Execute { code } => {
            if requests.send(EngineRequest::Execute(code)).is_err() {
                let _ = out.send(FromEngine::Finished { outcome: stopped() });
            }
        }
        ToEngine::Evaluate { id, expression } => {
            let (reply, answered) = tokio::sync::oneshot::channel();
            let _ = requests.send(EngineRequest::Evaluate { expression, reply });
            answer(out, answered, move |outcome| FromEngine::Evaluated { id, outcome: outcome.unwrap_or_else(stopped) });
        }
        ToEngine::Complete { id, code, byte_pos } => {
            let (reply, answered) = tokio::sync::oneshot::channel();
            let _ = requests.send(EngineRequest::Complete { code, byte_pos, reply });
            answer(out, answered, move |completions| FromEngine::Completed { id, completions: completions.unwrap_or_default() });
        }
        ToEngine::Inspect { id, code, byte_pos } => {
            let (reply, answered) = tokio::sync::oneshot::channel();
            let _ = requests.send(EngineRequest::Inspect { code, byte_pos, reply });
            answer(out, answered, move |inspection| FromEngine::Inspected { id, inspection: inspection.unwrap_or_default() });
        }
        ToEngine::InputReply { value } => {
            if let Some(waiting) = waiting_for_input.lock().unwrap().take() {
                let _ = waiting.send(value);
            }
        }
        ToEngine::InterruptWorker => worker.interrupt(),
        ToEngine::KillWorker => worker.kill(),
    }
}

/// evcxr's worker process, once started (evcxr keeps the handle valid across restarts).
#[derive(Clone, Default)]
struct WorkerProcess {
    child: Arc<OnceLock<Arc<Mutex<Child>>>>,
}

impl WorkerProcess {
    fn interrupt(&self) {
        if let Some(child) = self.child.get() {
            if let Ok(child) = child.lock() {
                // SAFETY: sending a signal to our own child process.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            }
        }
    }

    /// Kills the worker; evcxr restarts it and the cell reports which variables were lost.
    fn kill(&self) {
        if let Some(child) = self.child.get() {
            if let Ok(mut child) = child.lock() {
                let _ = child.kill();
            }
        }
    }
}

enum EngineRequest {
    Execute(String),
    /// The hidden cell that gives a taken spare's worker its kernel's directory and variables.
    Adopt(String),
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

fn run_engine(
    requests: std::sync::mpsc::Receiver<EngineRequest>,
    events: UnboundedSender<EngineEvent>,
    worker: WorkerProcess,
    on_warm: Box<dyn Fn()>,
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
            let quiet = Arc::new(AtomicBool::new(false));
            let forward_quiet = quiet.clone();
            std::thread::Builder::new()
                .name("engine-output".into())
                .spawn(move || forward_output(outputs, done_rx, forward_events, &forward_quiet))
                .expect("spawn output thread");
            Some(Session::start(context, prelude, events.clone(), quiet, &note))
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
                    EngineRequest::Adopt(_) | EngineRequest::Complete { .. } | EngineRequest::Inspect { .. } => {}
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
            // rust-analyzer frees much of what loading tch allocated; hand it back to the
            // system (measured: engine RSS 879 → 821 MB after the warm-up).
            // SAFETY: malloc_trim has no preconditions.
            unsafe { libc::malloc_trim(0) };
            on_warm();
            None
        }
        Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
    };
    for request in waiting.into_iter().chain(requests.iter()) {
        let adopting = matches!(request, EngineRequest::Adopt(_));
        match request {
            EngineRequest::Adopt(cell) => session.adopt(&cell),
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
                let completions = session.complete(&code, byte_pos);
                let _ = reply.send(completions);
            }
            EngineRequest::Inspect { code, byte_pos, reply } => {
                let _ = reply.send(session.inspect(&code, byte_pos));
            }
        }
        if !adopting {
            on_warm();
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
    let mut command = std::process::Command::new(exe);
    rust_src::wide_view_for(&mut command);
    let mut child = command
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

/// Moves worker output into the event stream until the engine goes away.
fn forward_output(
    outputs: evcxr::EvalContextOutputs,
    done: Receiver<CellOutcome>,
    events: UnboundedSender<EngineEvent>,
    quiet: &AtomicBool,
) {
    let send_stdout = |line: String| {
        if quiet.load(Ordering::SeqCst) {
            return true;
        }
        let event = match side_channel::parse(&line) {
            Some(record) => EngineEvent::Record(record),
            None => EngineEvent::Stdout(line),
        };
        events.send(event).is_ok()
    };
    // The worker's stderr relay sends text without a newline as records too.
    let send_stderr = |line: String| {
        if quiet.load(Ordering::SeqCst) {
            return true;
        }
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
