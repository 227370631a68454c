//! `torchbook`: the binary is glue. `kernel` runs a Jupyter kernel for a connection file;
//! `launch` runs one for Jupyter Enterprise Gateway; `install` writes the kernelspec; `serve`
//! executes the `torchbook-serve` binary beside this one; `run` executes a notebook headless, in
//! one process or as the ranks of a data-parallel job. The logic lives in the modules below.

use anyhow::Context;
use torchbook_kernel::engine::{self, cell_build};
use torchbook_kernel::kernel::server;
use torchbook_kernel::protocol::connection;
use torchbook_kernel::wire::spare;
use torchbook_kernel::{install, launch, prelude, run as headless, trace, workdir, worker};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

mod external;

#[derive(Parser)]
#[command(name = "torchbook", version, about = "A Jupyter kernel for Rust notebooks with tch preloaded")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the kernel (what kernel.json starts).
    Kernel {
        /// The connection file written by the frontend.
        #[arg(long, short = 'f')]
        connection_file: PathBuf,
        /// Serve an empty signing key on a non-loopback address (unsigned messages: anyone who
        /// can reach the ports can run code as you).
        #[arg(long)]
        allow_unsigned_network: bool,
    },
    /// Run the kernel for Jupyter Enterprise Gateway (what `install --enterprise-gateway`'s
    /// kernel.json starts): its kernel-launcher contract, as EG's own launchers implement it.
    /// Arguments not given are read from KERNEL_ID, RESPONSE_ADDRESS, PUBLIC_KEY, PORT_RANGE
    /// (or EG_RESPONSE_ADDRESS, EG_PUBLIC_KEY, EG_PORT_RANGE), as in EG's kernel images.
    Launch(LaunchArgs),
    /// Install the kernelspec so Jupyter frontends can find torchbook.
    Install(InstallArgs),
    /// Serve a TorchScript model over HTTP (runs `torchbook-serve`, next to this binary; see
    /// `torchbook serve --help`).
    #[command(disable_help_flag = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Execute a notebook headless (no Jupyter server), in one engine or, with --nproc-per-node
    /// / --nnodes, as the ranks of a data-parallel job (`fit` runs on all of them; rank 0's
    /// executed notebook is the output). Under torchrun, srun or Kubeflow, run it without
    /// those flags: it reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
    Run(RunArgs),
    /// Build the prelude cache (run by `install` and by the first kernel that needs it).
    #[command(hide = true)]
    BuildPrelude,
    /// Run the engine process (evcxr and the cell worker) for a kernel, over stdin and stdout.
    #[command(hide = true)]
    Engine,
    /// Run a spare engine that the next kernel with the same environment takes over.
    #[command(hide = true)]
    Spare {
        /// A process whose end ends the spare (the frontend that started the kernel).
        #[arg(long = "owner")]
        owners: Vec<u32>,
    },
}

#[derive(Args)]
struct LaunchArgs {
    /// The kernel's id as Enterprise Gateway knows it.
    #[arg(long = "kernel-id", alias = "RemoteProcessProxy.kernel-id", value_name = "ID")]
    kernel_id: Option<String>,
    /// Where to send the encrypted connection info.
    #[arg(long = "response-address", alias = "RemoteProcessProxy.response-address", value_name = "IP:PORT")]
    response_address: Option<String>,
    /// EG's RSA public key (base64 DER SubjectPublicKeyInfo) that encrypts the connection info.
    #[arg(long = "public-key", alias = "RemoteProcessProxy.public-key", value_name = "KEY")]
    public_key: Option<String>,
    /// Ports the kernel and its communication port may use (0..0: any).
    #[arg(long = "port-range", alias = "RemoteProcessProxy.port-range", value_name = "LOWER..UPPER")]
    port_range: Option<String>,
    /// Address the kernel binds (EG's launchers bind every interface).
    #[arg(long, default_value = "0.0.0.0")]
    ip: String,
    /// Accepted for EG's kernelspecs; only `none` applies to this kernel.
    #[arg(long = "spark-context-initialization-mode", alias = "RemoteProcessProxy.spark-context-initialization-mode")]
    spark_context_initialization_mode: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// The notebook (.ipynb, nbformat 4) to execute.
    notebook: PathBuf,
    /// Where the executed notebook is written (default: over NOTEBOOK).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// A parameter for the cell tagged `parameters`, typed as papermill's -p types it
    /// (integers, floats, True/False, None, JSON lists, else a string). Repeatable.
    #[arg(short = 'p', long = "parameter", num_args = 2, value_names = ["NAME", "VALUE"])]
    parameters: Vec<String>,
    /// A parameter passed as a string, whatever it looks like. Repeatable.
    #[arg(short = 'r', long = "parameter-raw", num_args = 2, value_names = ["NAME", "VALUE"])]
    raw_parameters: Vec<String>,
    /// Go on after a failing cell (cells tagged `raises-exception` always may fail).
    #[arg(long)]
    allow_errors: bool,
    /// Ranks to start on this node (torchrun's --nproc-per-node).
    #[arg(long, default_value_t = 1)]
    nproc_per_node: usize,
    /// Nodes in the job; run the same command on each with its --node-rank.
    #[arg(long, default_value_t = 1)]
    nnodes: usize,
    /// This node's index, 0 to nnodes-1.
    #[arg(long, default_value_t = 0)]
    node_rank: usize,
    /// Node 0's address, reachable from every node (default on one node: 127.0.0.1).
    #[arg(long)]
    master_addr: Option<String>,
    /// A free port on node 0 for the store (default on one node: any free port).
    #[arg(long)]
    master_port: Option<u16>,
}

#[derive(Args)]
struct InstallArgs {
    /// Install for the current user (the default, except with --shared).
    #[arg(long, conflicts_with_all = ["sys_prefix", "prefix", "shared"])]
    user: bool,
    /// Install into the active Python environment (sys.prefix).
    #[arg(long, conflicts_with = "prefix")]
    sys_prefix: bool,
    /// Install under PREFIX/share/jupyter/kernels (with --shared: /usr/local unless given).
    #[arg(long)]
    prefix: Option<PathBuf>,
    /// Install for every user of this machine (JupyterHub): copy the binary, the runtime's
    /// sources and whatever other users cannot read (libtorch, the toolchain) into DIR, build
    /// the prelude there once, and point the kernelspec at it; kernels use it read-only. See
    /// docs/DEPLOYMENT.md.
    #[arg(long, value_name = "DIR")]
    shared: Option<PathBuf>,
    /// With --shared: the toolchain cells are built with (a sysroot: bin/rustc, lib/rustlib
    /// with rust-src), readable by every user and the rustc torchbook was built with. By
    /// default the build's own, copied into DIR unless everyone can read it already.
    #[arg(long, value_name = "DIR", requires = "shared")]
    toolchain: Option<PathBuf>,
    /// Kernelspec name.
    #[arg(long, default_value = "torchbook")]
    name: String,
    /// Name shown in the frontend's launcher.
    #[arg(long, default_value = "Rust (torchbook)")]
    display_name: String,
    /// libtorch folder for the kernel's library path (defaults to $LIBTORCH).
    #[arg(long, env = "LIBTORCH")]
    libtorch: Option<PathBuf>,
    /// Do not build the prelude cache now (the first kernel will, taking minutes).
    #[arg(long)]
    no_prelude: bool,
    /// Write a kernelspec for Jupyter Enterprise Gateway (DistributedProcessProxy, `torchbook
    /// launch`) instead of a local one; see docs/DEPLOYMENT.md.
    #[arg(long)]
    enterprise_gateway: bool,
}

/// The interrupt flag of the cell worker (DESIGN §3). It lives in this executable, which evcxr
/// runs as its worker, because every cell library carries its own copy of the `torchbook`
/// crate's statics; the runtime finds this one with `dlsym` (exported by build.rs).
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static torchbook_interrupt_flag: AtomicBool = AtomicBool::new(false);

extern "C" fn on_worker_sigint(_: libc::c_int) {
    torchbook_interrupt_flag.store(true, Ordering::SeqCst);
}

fn main() {
    // Started by evcxr as its cargo, or by cargo as the rustc wrapper (see `cell_build`).
    match cell_build::role() {
        cell_build::Role::Cargo => std::process::exit(cell_build::run_as_cargo()),
        cell_build::Role::RustcRecorder => std::process::exit(cell_build::run_as_rustc_recorder()),
        cell_build::Role::Other => {}
    }
    if std::env::var_os("EVCXR_IS_RUNTIME").is_some() {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(libc::SIGINT, on_worker_sigint as *const () as libc::sighandler_t) };
        // A worker outlives a killed engine process otherwise (a cell in an endless loop never
        // reads the closed pipe). The engine starts workers from its main thread, which lives
        // as long as the engine does.
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // Tells torchbook-display in cells that a kernel reads its records.
        std::env::set_var("TORCHBOOK_OUTPUT", "records");
        if let Err(error) = worker::output::install() {
            eprintln!("torchbook: worker output relay unavailable ({error}); output is line by line");
        }
        worker::libtorch::load_globally();
    }
    // evcxr re-executes this binary as its worker and as a rustc wrapper; this must come first.
    evcxr::runtime_hook();
    if let Err(error) = run(Cli::parse()) {
        eprintln!("torchbook: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Kernel { connection_file, allow_unsigned_network } => {
            std::sync::LazyLock::force(&trace::PROCESS_START);
            // Before anything is set: spares are keyed by the environment we were given.
            spare::remember_original();
            let info = connection::ConnectionInfo::from_file(&connection_file)?;
            if !allow_unsigned_network {
                info.refuse_unsigned_network()?;
            }
            let workdir = workdir::WorkDir::create().context("cannot create a working folder")?;
            prelude::prepare_library_path();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let served = runtime.block_on(server::serve(info, workdir.engine_folder(), workdir.rank_engine_folders()));
            workdir.remove();
            served?;
            // Detached tasks and the engine thread are not waited for: the work is done.
            std::process::exit(0);
        }
        Command::Launch(args) => {
            std::sync::LazyLock::force(&trace::PROCESS_START);
            launch::prepare_environment();
            spare::remember_original();
            let args = launch::LaunchArgs {
                kernel_id: args.kernel_id,
                response_address: args.response_address,
                public_key: args.public_key,
                port_range: args.port_range,
                ip: args.ip,
                spark_context_initialization_mode: args.spark_context_initialization_mode,
            };
            let config = args.resolve(|name| std::env::var(name).ok())?;
            let workdir = workdir::WorkDir::create().context("cannot create a working folder")?;
            prelude::prepare_library_path();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let served = runtime.block_on(launch::run(config, workdir.engine_folder(), workdir.rank_engine_folders()));
            workdir.remove();
            served?;
            std::process::exit(0);
        }
        Command::Serve { args } => Err(external::exec_sibling("torchbook-serve", &args)),
        Command::Run(args) => run_notebook(args),
        Command::Engine => {
            std::sync::LazyLock::force(&trace::PROCESS_START);
            std::process::exit(engine::run());
        }
        Command::Spare { owners } => {
            std::sync::LazyLock::force(&trace::PROCESS_START);
            std::process::exit(engine::run_spare(&owners));
        }
        Command::BuildPrelude => {
            // The cell toolchain, as in a kernel: the cache then carries what the cargo
            // stand-in learns while building it (evcxr's `:dep` check, see `cargo_metadata`).
            let workdir = workdir::WorkDir::create().context("cannot create a working folder")?;
            prelude::prepare_library_path();
            let config = prelude::PreludeConfig::from_env()?;
            let built = prelude::build_cache(&config, &mut |line| println!("{line}")).map_err(anyhow::Error::msg);
            workdir.remove();
            built.map(|_| ())
        }
        Command::Install(args) => {
            let location = match (args.user, args.sys_prefix, args.prefix) {
                (_, true, _) => install::InstallLocation::SysPrefix,
                (_, _, Some(prefix)) => install::InstallLocation::Prefix(prefix),
                _ if args.shared.is_some() => install::InstallLocation::Prefix("/usr/local".into()),
                _ => install::InstallLocation::User,
            };
            let mut options = install::InstallOptions {
                location,
                name: args.name,
                display_name: args.display_name,
                libtorch: args.libtorch,
                enterprise_gateway: args.enterprise_gateway,
                shared: None,
            };
            let mut binary = std::env::current_exe().context("cannot locate the torchbook binary")?;
            if let Some(root) = &args.shared {
                let root = std::path::absolute(root).context("--shared")?;
                let libtorch = options.libtorch.clone().context("--shared needs libtorch (--libtorch or LIBTORCH)")?;
                anyhow::ensure!(!args.no_prelude, "--shared builds the prelude cache; --no-prelude does not apply");
                let layout = install::shared::prepare(&root, &binary, &libtorch, args.toolchain.as_deref(), &mut |line| {
                    println!("{line}")
                })
                .map_err(anyhow::Error::msg)?;
                binary = layout.binary.clone();
                options.libtorch = Some(layout.libtorch.clone());
                options.shared = Some(layout);
            }
            let dir = install::install(&options, &binary)?;
            println!("Installed kernelspec {:?} in {}", options.name, dir.display());
            println!("  binary:   {}", binary.display());
            match &options.libtorch {
                Some(path) => println!("  libtorch: {}", path.display()),
                None => println!("  libtorch: none configured (plain Rust cells only)"),
            }
            if let Some(layout) = &options.shared {
                println!("  shared:   {} (prelude cache {}, read-only for kernels)", layout.root.display(), layout.cache.display());
                println!("  toolchain: {}", layout.toolchain.display());
            } else if let (Some(libtorch), false) = (&options.libtorch, args.no_prelude) {
                // A separate process: evcxr takes its folder from the environment at start.
                let status = std::process::Command::new(&binary)
                    .arg("build-prelude")
                    .env("LIBTORCH", libtorch)
                    .env("TORCHBOOK_RUNTIME", prelude::default_runtime())
                    .status()
                    .context("cannot run build-prelude")?;
                anyhow::ensure!(status.success(), "the prelude cache could not be built (see above)");
            }
            Ok(())
        }
    }
}

fn run_notebook(args: RunArgs) -> anyhow::Result<()> {
    let pairs = |values: &[String], make: fn(&str, &str) -> headless::notebook::CliParameter| {
        values.chunks(2).map(|pair| make(&pair[0], &pair[1])).collect::<Vec<_>>()
    };
    let mut parameters = pairs(&args.parameters, headless::notebook::CliParameter::inferred);
    parameters.extend(pairs(&args.raw_parameters, headless::notebook::CliParameter::raw));
    anyhow::ensure!(args.notebook.is_file(), "{}: no such notebook", args.notebook.display());

    if args.nproc_per_node > 1 || args.nnodes > 1 {
        let topology = headless::launcher::Topology::new(
            args.nproc_per_node,
            args.nnodes,
            args.node_rank,
            args.master_addr,
            args.master_port,
        )
        .map_err(anyhow::Error::msg)?;
        let mut child_args: Vec<std::ffi::OsString> = vec!["run".into(), args.notebook.clone().into()];
        if let Some(output) = &args.output {
            child_args.extend(["-o".into(), output.clone().into()]);
        }
        for pair in args.parameters.chunks(2) {
            child_args.extend(["-p".into(), pair[0].clone().into(), pair[1].clone().into()]);
        }
        for pair in args.raw_parameters.chunks(2) {
            child_args.extend(["-r".into(), pair[0].clone().into(), pair[1].clone().into()]);
        }
        if args.allow_errors {
            child_args.push("--allow-errors".into());
        }
        let program = std::env::current_exe().context("cannot locate the torchbook binary")?;
        eprintln!(
            "torchbook run: {} rank(s) on this node ({} in all), store {}:{}",
            topology.nproc_per_node,
            topology.world_size(),
            topology.master_addr,
            topology.master_port
        );
        let failed = headless::launcher::launch(&program, &child_args, &topology).map_err(anyhow::Error::msg)?;
        if failed.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = failed.iter().map(|(rank, how)| format!("rank {rank}: {how}")).collect();
        anyhow::bail!("{} of {} rank(s) on this node failed ({})", failed.iter().filter(|(_, how)| !how.starts_with("stopped")).count(), topology.nproc_per_node, list.join("; "));
    }

    std::sync::LazyLock::force(&trace::PROCESS_START);
    // A headless run leaves nothing behind: no spare engine waiting for a next kernel.
    if std::env::var_os("TORCHBOOK_SPARE_ENGINE").is_none() {
        std::env::set_var("TORCHBOOK_SPARE_ENGINE", "0");
    }
    spare::remember_original();
    let options = headless::RunOptions {
        notebook: args.notebook,
        output: args.output,
        parameters,
        allow_errors: args.allow_errors,
    };
    let workdir = workdir::WorkDir::create().context("cannot create a working folder")?;
    prelude::prepare_library_path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ran = runtime.block_on(headless::run_notebook(&options, workdir.engine_folder(), &mut |line| eprintln!("{line}")));
    workdir.remove();
    ran?;
    // The engine's reader threads are not waited for: the work is done.
    std::process::exit(0);
}
