//! Glue that runs a kernel: bind the channels, start their tasks, and wait for a reason to stop
//! (a shutdown request, the parent process going away, SIGTERM, or a launcher's request). SIGINT
//! never stops it.

use crate::protocol::connection::ConnectionInfo;
use crate::kernel::engine::{Engine, EngineFolder};
use crate::kernel::handlers::{ControlHandler, KernelState, ShellHandler};
use crate::protocol::Signer;
use crate::kernel::transport::{self, Sockets};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// What a launcher (`crate::launch`: Enterprise Gateway's communication port) asks of a running
/// kernel from outside the Jupyter channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum External {
    /// Interrupt the running cell, exactly as `interrupt_request` does.
    Interrupt,
    /// Stop as on `shutdown_request` or SIGTERM.
    Shutdown,
    /// Stop at once: the engine's process group (evcxr, the worker, cargo) is killed first.
    Kill,
}

/// How the kernel is run.
pub struct ServeOptions {
    /// Exit when the process that started the kernel goes away (`JPY_PARENT_PID`, or being
    /// re-parented). A launcher turns it off: Enterprise Gateway may start it detached (`nohup
    /// … &` over ssh) and governs its life through the communication port instead.
    pub watch_parent: bool,
    /// Requests from a launcher.
    pub external: Option<mpsc::UnboundedReceiver<External>>,
    /// Where `:ranks N`'s extra engines keep evcxr's folders (`None`: `:ranks` says it cannot).
    pub rank_folders: Option<crate::kernel::ranks::RankFolders>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { watch_parent: true, external: None, rank_folders: None }
    }
}

/// Runs the kernel until it is told to stop.
pub async fn serve(
    info: ConnectionInfo,
    engine_folder: EngineFolder,
    rank_folders: crate::kernel::ranks::RankFolders,
) -> Result<(), transport::BindError> {
    // First, so that a SIGINT sent as soon as the kernel answers cannot find the default action.
    let signals = Signals::install();
    let sockets = Sockets::bind(&info).await?;
    let options = ServeOptions { rank_folders: Some(rank_folders), ..ServeOptions::default() };
    serve_bound(info, sockets, engine_folder, signals, options).await;
    Ok(())
}

/// SIGINT and SIGTERM, taken over from their default actions.
pub struct Signals {
    interrupts: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime). Before the sockets are bound, so no
    /// frontend can learn of the kernel while a SIGINT would still kill it.
    pub fn install() -> Signals {
        Signals {
            interrupts: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        }
    }
}

/// Waits for the next launcher request; never, when there is no launcher.
async fn next_external(external: &mut Option<mpsc::UnboundedReceiver<External>>) -> Option<External> {
    match external {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the kernel on sockets already bound for `info` (a launcher binds them itself, to choose
/// ports in its range) until it is told to stop.
pub async fn serve_bound(
    info: ConnectionInfo,
    sockets: Sockets,
    engine_folder: EngineFolder,
    signals: Signals,
    mut options: ServeOptions,
) {
    let Signals { mut interrupts, mut terminate } = signals;
    // Start evcxr now, so its warm-up overlaps the frontend's first kernel_info round trip.
    let engine = Engine::start(engine_folder);
    let session = uuid::Uuid::new_v4().to_string();
    let signer = Arc::new(Mutex::new(Signer::new(&info.key)));

    tokio::spawn(transport::run_heartbeat(sockets.heartbeat));
    let iopub = transport::start_iopub(sockets.iopub, signer.clone(), session.clone());
    let (shutdown, mut shutdown_requested) = watch::channel(None);
    let state = KernelState {
        iopub: iopub.clone(),
        worker: engine.worker(),
        shutdown,
        extra_workers: Default::default(),
    };

    let (mut control_in, control_out) =
        transport::router(sockets.control, signer.clone(), &session, "control");
    let comms = crate::kernel::handlers::SharedComms::default();
    let mut control = ControlHandler {
        state: state.clone(),
        replier: control_out,
        comms: comms.clone(),
        usage: Default::default(),
    };
    tokio::spawn(async move {
        while let Some(request) = control_in.next().await {
            control.handle(request).await;
        }
    });

    let (mut shell_in, shell_out) =
        transport::router(sockets.shell, signer.clone(), &session, "shell");
    let (stdin_in, stdin_out) = transport::router(sockets.stdin, signer.clone(), &session, "stdin");
    let mut shell = ShellHandler {
        state: state.clone(),
        replier: shell_out,
        stdin: crate::kernel::handlers::Stdin {
            incoming: stdin_in,
            replier: stdin_out,
        },
        engine,
        execution_count: 0,
        history: crate::kernel::history::History::open(),
        queued_behind_error: Default::default(),
        comms,
        ranks: crate::kernel::ranks::Ranks::new(options.rank_folders.take(), state.extra_workers.clone()),
    };
    tokio::spawn(async move {
        loop {
            let (request, abort) = match shell.queued_behind_error.pop_front() {
                Some(request) => (request, true),
                None => match shell_in.next().await {
                    Some(request) => (request, false),
                    None => break,
                },
            };
            shell.handle(request, abort, &mut shell_in).await;
        }
    });

    let mut parent_check = tokio::time::interval(Duration::from_millis(500));
    let parent = ParentWatch::from_env();
    loop {
        tokio::select! {
            _ = shutdown_requested.changed() => break,
            _ = terminate.recv() => break,
            // jupyter_client's signal mode signals the whole process group: the kernel survives
            // it and treats it as an interrupt of the running cell.
            _ = interrupts.recv() => {
                state.interrupt(crate::kernel::engine::interrupt_grace());
            }
            _ = parent_check.tick(), if options.watch_parent => if !parent.alive() {
                eprintln!("torchbook: parent process is gone; exiting");
                break;
            },
            request = next_external(&mut options.external) => match request {
                // The same path as interrupt_request on control.
                Some(External::Interrupt) => {
                    state.interrupt(crate::kernel::engine::interrupt_grace());
                }
                Some(External::Shutdown) => break,
                Some(External::Kill) => {
                    state.worker.kill_engine();
                    break;
                }
                None => options.external = None,
            },
        }
    }
    // Let the shutdown reply and the final idle reach the wire before the process ends.
    tokio::time::sleep(Duration::from_millis(50)).await;
    iopub.flush().await;
    state.worker.kill();
}

/// Notices when the process that started us has gone away, so no kernel is left orphaned.
struct ParentWatch {
    jpy_parent: Option<libc::pid_t>,
    original_parent: libc::pid_t,
}

impl ParentWatch {
    fn from_env() -> Self {
        let jpy_parent = std::env::var("JPY_PARENT_PID")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|pid| *pid > 1);
        ParentWatch {
            jpy_parent,
            // SAFETY: getppid has no preconditions.
            original_parent: unsafe { libc::getppid() },
        }
    }

    fn alive(&self) -> bool {
        // SAFETY: getppid has no preconditions; kill with signal 0 only checks existence.
        let reparented = self.original_parent > 1 && unsafe { libc::getppid() } != self.original_parent;
        let jpy_gone = self.jpy_parent.is_some_and(|pid| {
            let missing = unsafe { libc::kill(pid, 0) } != 0;
            missing && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        });
        !(reparented || jpy_gone)
    }
}
