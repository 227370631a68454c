//! Building cells without cargo's per-build cost: a `cargo` in front of the real one that, once
//! cargo has built a cell crate, replays cargo's rustc command for the next cells itself.
//!
//! evcxr runs `cargo build` for every cell. With tch's ~100 dependencies, cargo spends about
//! 60 ms (of a ~320 ms trivial cell) deciding that nothing but the cell changed. Where cargo
//! would do no more than run rustc on the cell crate, this module runs that same command.
//!
//! How the pieces fit:
//! - [`install_toolchain`] (kernel start) makes a rustup "path toolchain" in the kernel's
//!   folder whose `bin/cargo` is this executable and whose other tools link to the real
//!   toolchain, and points `RUSTUP_TOOLCHAIN` and `PATH` at it. evcxr finds its cargo through
//!   `rustup which cargo` (then `PATH`), so it runs [`run_as_cargo`]. evcxr's cargo path
//!   cannot be set through its API.
//! - When cargo must run (the first cell, a `:dep`, a changed runtime source…), the stand-in runs
//!   it with itself as `RUSTC_WRAPPER` ([`run_as_rustc_recorder`]). That records the cell
//!   crate's rustc command and environment exactly as cargo made them, before running it.
//! - The record is kept with a key over everything that could make cargo do something else:
//!   cargo's arguments, the environment, the crate's manifest, lock file and cargo configs, and
//!   the files of every path dependency (`torchbook`, `torchbook-display`, a user's `:dep` on a
//!   path). Registry and git dependencies are pinned by the lock file. The next `cargo build`
//!   with the same key runs the recorded rustc. It then writes the JSON messages cargo would
//!   (diagnostics wrapped as `compiler-message`, the cell library's `compiler-artifact`), so
//!   evcxr cannot tell the difference.
//! - Anything else (`cargo check`, `metadata`, `clean`, another crate, a wrapper evcxr set
//!   itself) goes to the real cargo unchanged.
//!
//! Set `TORCHBOOK_CELL_CARGO=1` to let cargo build every cell, as evcxr does.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use super::type_probe::Guesses;

/// The crate name evcxr gives cell crates.
const CELL_CRATE: &str = "ctx";
/// Set by the stand-in cargo for its rustc wrapper: where to record the cell crate's command.
const RECORD_ENV: &str = "TORCHBOOK_RECORD_CELL_RUSTC";
/// The real toolchain's cargo and rustc, for the stand-in.
const REAL_CARGO_ENV: &str = "TORCHBOOK_REAL_CARGO";
const REAL_RUSTC_ENV: &str = "TORCHBOOK_REAL_RUSTC";
/// The record, in the crate's target folder (it is only valid for that crate).
const RECORD_FILE: &str = "target/torchbook-cell-build.json";
const PENDING_FILE: &str = "target/torchbook-cell-rustc.json";
const LOG_ENV: &str = "TORCHBOOK_CELL_BUILD_LOG";
/// rustc errors that mean the dependencies are not what the record expects; cargo sorts it out.
const STALE_DEPENDENCY_ERRORS: [&str; 4] = ["E0460", "E0461", "E0463", "E0514"];

/// The sysroot of the toolchain this binary was built with: cells must use the same one (the
/// prelude cache was compiled by it).
pub(crate) const BUILD_SYSROOT: &str = env!("TORCHBOOK_RUST_SYSROOT");

/// Names the toolchain cells are built with (its sysroot: `bin/rustc`, `lib/rustlib/…`) when
/// the one this binary was built with is not readable where the kernel runs, e.g. under
/// `/root/.rustup` for other users of a shared install. It must be the same rustc version
/// (`torchbook install --toolchain` checks).
pub const TOOLCHAIN_ENV: &str = "TORCHBOOK_TOOLCHAIN";

/// The sysroot of the cells' toolchain: `TORCHBOOK_TOOLCHAIN`, else [`BUILD_SYSROOT`].
pub fn sysroot() -> PathBuf {
    std::env::var_os(TOOLCHAIN_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BUILD_SYSROOT))
}

/// Which role this process was started in, decided from how it was invoked.
pub enum Role {
    /// Invoked as `cargo` (through the toolchain folder).
    Cargo,
    /// Invoked by cargo as the rustc wrapper while recording.
    RustcRecorder,
    Other,
}

pub fn role() -> Role {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    if Path::new(&arg0).file_name().is_some_and(|name| name == "cargo") {
        Role::Cargo
    } else if std::env::var_os(RECORD_ENV).is_some() && std::env::args_os().nth(1).is_some() {
        Role::RustcRecorder
    } else {
        Role::Other
    }
}

/// Makes `<folder>/toolchain` and points rustup and `PATH` at it, so that evcxr's cargo is this
/// executable. Does nothing when `TORCHBOOK_CELL_CARGO=1` or the build toolchain has no cargo.
/// Call before any thread starts: it sets environment variables.
pub fn install_toolchain(folder: &Path) -> std::io::Result<bool> {
    if std::env::var("TORCHBOOK_CELL_CARGO").is_ok_and(|v| v == "1") {
        return Ok(false);
    }
    let sysroot = sysroot();
    let real_bin = sysroot.join("bin");
    let (real_cargo, real_rustc) = (real_bin.join("cargo"), real_bin.join("rustc"));
    if !real_cargo.is_file() || !real_rustc.is_file() {
        return Ok(false);
    }
    let toolchain = folder.join("toolchain");
    let bin = toolchain.join("bin");
    std::fs::create_dir_all(&bin)?;
    // rustc, rustdoc, rustfmt… stay the real ones (a user's cell may run them); rustup's path
    // toolchains need `lib` too.
    for entry in std::fs::read_dir(&real_bin)? {
        let entry = entry?;
        if entry.file_name() != "cargo" {
            std::os::unix::fs::symlink(entry.path(), bin.join(entry.file_name()))?;
        }
    }
    std::os::unix::fs::symlink(sysroot.join("lib"), toolchain.join("lib"))?;
    std::os::unix::fs::symlink(std::env::current_exe()?, bin.join("cargo"))?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(bin.clone()).chain(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).map_err(std::io::Error::other)?;
    std::env::set_var("PATH", path);
    std::env::set_var("RUSTUP_TOOLCHAIN", &toolchain);
    std::env::set_var(REAL_CARGO_ENV, real_cargo);
    std::env::set_var(REAL_RUSTC_ENV, real_rustc);
    Ok(true)
}

/// Whether evcxr's cargo is the stand-in in this process tree ([`install_toolchain`] ran here
/// or in the kernel that started this engine): variable types from rustc need it.
pub fn stand_in_installed() -> bool {
    std::env::var_os(REAL_CARGO_ENV).is_some()
}

/// What a recorded build needs to run again.
#[derive(Serialize, Deserialize)]
struct Record {
    key: String,
    /// Package folders of path dependencies, whose files are part of the key.
    watched: Vec<PathBuf>,
    /// rustc and its arguments, as cargo ran it.
    command: Vec<String>,
    env: Vec<(String, String)>,
    /// cargo's `compiler-artifact` line for the cell library.
    artifact: String,
}

/// `cargo` as evcxr runs it: replays the recorded rustc command when nothing else could
/// change, else runs the real cargo (recording what it does). Returns the exit code.
pub fn run_as_cargo() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(real_cargo) = std::env::var_os(REAL_CARGO_ENV) else {
        eprintln!("torchbook: started as cargo without {REAL_CARGO_ENV}");
        return 101;
    };
    let Ok(cwd) = std::env::current_dir() else {
        return run_real_cargo(&real_cargo, &args, None);
    };
    if let Some(crate_dir) = super::cargo_metadata::cell_metadata_call(&args, &cwd) {
        let started = std::time::Instant::now();
        let code = super::cargo_metadata::answer(&args, &crate_dir, &|| {
            let output = real_cargo_command(&real_cargo, &args).stderr(Stdio::inherit()).output();
            match output {
                Ok(output) => (output.status.code().unwrap_or(101), output.stdout),
                Err(e) => {
                    eprintln!("torchbook: cannot run cargo: {e}");
                    (101, Vec::new())
                }
            }
        });
        let how = match (code.from_cache, code.packages) {
            (true, _) => "from the cache".to_owned(),
            (false, Some((kept, all))) => format!("{kept} of {all} packages"),
            (false, None) => "unpruned".to_owned(),
        };
        trace(&format!("answered rust-analyzer's cargo metadata in {:?} ({how}, exit {})", started.elapsed(), code.code));
        return code.code;
    }
    if super::cargo_metadata::dependency_check_call(&args, &cwd) {
        let started = std::time::Instant::now();
        let (code, cached) = super::cargo_metadata::answer_dependency_check(&args, &cwd, &|| {
            match real_cargo_command(&real_cargo, &args).output() {
                Ok(output) => (output.status.code().unwrap_or(101), output.stdout, output.stderr),
                Err(e) => (101, Vec::new(), format!("torchbook: cannot run cargo: {e}\n").into_bytes()),
            }
        });
        trace(&format!("answered evcxr's :dep check in {:?} ({}, exit {code})", started.elapsed(), if cached { "from the cache" } else { "cargo" }));
        return code;
    }
    if !replayable(&args) {
        return run_real_cargo(&real_cargo, &args, None);
    }
    annotate_question_marks(&cwd);
    use_runtime_variable_store(&cwd);
    let started = std::time::Instant::now();
    let current = load_record(&cwd).filter(|record| {
        let matches = key(&args, &cwd, &record.watched).as_deref() == Some(record.key.as_str());
        trace(&format!("record checked in {:?}: {}", started.elapsed(), if matches { "current" } else { "stale" }));
        matches
    });
    // New variables' types, from rustc (see `type_probe`), before the cell is built.
    let probed = std::time::Instant::now();
    let mut command = || match &current {
        Some(record) => Some((record.command.clone(), record.env.clone())),
        None => command_from_cargo(&real_cargo, &args, &cwd),
    };
    let source_path = cwd.join("src/lib.rs");
    let source = std::fs::read(&source_path).ok();
    // Guessed types are only tried where the build is ours to retry: a replay.
    let guesses = if current.is_some() { Guesses::Allowed } else { Guesses::Never };
    let mut guessed = match resolve_types(&cwd, &mut command, guesses) {
        Ok(guessed) => guessed,
        Err(code) => return code,
    };
    trace(&format!("variable types ready in {:?} ({} guessed)", probed.elapsed(), guessed.len()));
    if let Some(record) = &current {
        let mut replayed = replay(record, &cwd);
        if !guessed.is_empty() && !matches!(replayed, Replayed::Done(ref output) if output.code == 0) {
            // A guess was wrong (or the cell has errors of its own): build as if none was made.
            trace("guessed variable types did not build; asking rustc");
            if let Some(source) = &source {
                let _ = std::fs::write(&source_path, source);
            }
            guessed = match resolve_types(&cwd, &mut command, Guesses::Never) {
                Ok(guessed) => guessed,
                Err(code) => return code,
            };
            replayed = replay(record, &cwd);
        }
        match replayed {
            Replayed::Done(output) => {
                if output.code == 0 {
                    super::type_probe::remember(&cwd, &guessed);
                }
                let code = output.pass_on();
                trace(&format!("rustc built the cell without cargo in {:?} (exit {code})", started.elapsed()));
                return code;
            }
            Replayed::NeedsCargo => trace("recorded cell build is stale; running cargo"),
        }
    }
    let code = run_real_cargo(&real_cargo, &args, Some(&cwd));
    let recorded = if cwd.join(RECORD_FILE).exists() { "recorded" } else { "not recorded" };
    trace(&format!("cargo built the cell in {:?} (exit {code}, {recorded})", started.elapsed()));
    code
}

/// Defines the cell's placeholder types (see `type_probe`); the guessed ones, or, when a type
/// cannot be found, cargo's exit code after the errors are written for evcxr.
fn resolve_types(
    crate_dir: &Path,
    command: &mut dyn FnMut() -> Option<super::type_probe::RustcCommand>,
    guesses: Guesses,
) -> Result<Vec<(String, String)>, i32> {
    match super::type_probe::resolve(crate_dir, command, guesses) {
        super::type_probe::Outcome::Ready(guessed) => Ok(guessed),
        super::type_probe::Outcome::Failed(messages) => {
            let mut out = std::io::stdout().lock();
            for message in messages {
                let _ = writeln!(out, "{message}");
            }
            let _ = writeln!(out, "{}", serde_json::json!({"reason": "build-finished", "success": false}));
            Err(101)
        }
    }
}

/// Lets an error passed on with `?` reach the kernel with its type (see `question_mark`).
fn annotate_question_marks(crate_dir: &Path) {
    let source = crate_dir.join("src/lib.rs");
    let Ok(text) = std::fs::read_to_string(&source) else { return };
    if let Some(annotated) = crate::wire::question_mark::annotate_cell_source(&text) {
        if let Err(e) = std::fs::write(&source, annotated) {
            eprintln!("torchbook: cannot annotate the cell's error conversion ({e}); `?` errors show without their type");
        }
    }
}

/// Builds the cell against the runtime's compiled variable store (see `variable_store`), unless
/// `TORCHBOOK_CELL_EVCXR_STORE=1`.
fn use_runtime_variable_store(crate_dir: &Path) {
    if std::env::var("TORCHBOOK_CELL_EVCXR_STORE").is_ok_and(|v| v == "1") {
        return;
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap_or_default();
    if !super::variable_store::crate_has_runtime(&manifest) {
        return;
    }
    let source = crate_dir.join("src/lib.rs");
    let Ok(text) = std::fs::read_to_string(&source) else { return };
    match super::variable_store::with_runtime_store(&text) {
        Ok(swapped) => {
            if let Err(e) = std::fs::write(&source, swapped) {
                eprintln!("torchbook: cannot write the cell's source ({e}); it builds evcxr's variable store");
            } else {
                trace("variable store: the runtime's");
            }
        }
        Err(super::variable_store::Kept::NoStore) => {}
        Err(super::variable_store::Kept::OtherText(hash)) => trace(&format!("variable store: evcxr's own (its text hashes to {hash})")),
    }
}

/// The real cargo with `args`.
fn real_cargo_command(real_cargo: &OsString, args: &[OsString]) -> Command {
    let mut command = Command::new(real_cargo);
    command.args(args);
    // Cargo's fingerprints were made with the real rustc's path (the prelude cache too).
    if let Some(real_rustc) = std::env::var_os(REAL_RUSTC_ENV) {
        if std::env::var_os("RUSTC").is_some_and(|r| same_file(Path::new(&r), Path::new(&real_rustc))) {
            command.env("RUSTC", &real_rustc);
        }
    }
    command
}

/// `cargo build` with evcxr's JSON messages and no wrapper of evcxr's own.
fn replayable(args: &[OsString]) -> bool {
    let first_command = args.iter().find(|a| !a.to_string_lossy().starts_with('-'));
    first_command.is_some_and(|c| c == "build")
        && args.iter().any(|a| a == "--message-format=json")
        && std::env::var_os("RUSTC_WRAPPER").is_none()
}

/// Runs the real cargo; with `record_in`, as the recording wrapper's cargo, saving the record
/// when the build succeeds.
fn run_real_cargo(real_cargo: &OsString, args: &[OsString], record_in: Option<&Path>) -> i32 {
    let mut command = real_cargo_command(real_cargo, args);
    let Some(cwd) = record_in else {
        return exit_code(command.status());
    };
    let _ = std::fs::remove_file(cwd.join(RECORD_FILE));
    let pending = cwd.join(PENDING_FILE);
    let _ = std::fs::remove_file(&pending);
    let Ok(this_exe) = std::env::current_exe() else {
        return exit_code(command.status());
    };
    command.env("RUSTC_WRAPPER", this_exe).env(RECORD_ENV, &pending).stdout(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("torchbook: cannot run cargo: {e}");
            return 101;
        }
    };
    // Pass cargo's messages on as they come, keeping the ones the record needs.
    let mut artifact = None;
    let mut watched = Vec::new();
    let stdout = child.stdout.take().expect("piped");
    let mut out = std::io::stdout().lock();
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(out, "{line}");
        if let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) {
            if message["reason"] == "compiler-artifact" {
                if message["target"]["name"] == CELL_CRATE {
                    artifact = Some(line.clone());
                } else if let Some(folder) = path_dependency_folder(&message) {
                    watched.push(folder);
                }
            }
        }
    }
    let _ = out.flush();
    let code = exit_code(child.wait());
    if code == 0 {
        if let (Some(artifact), Some((command, env))) = (artifact, load_pending(&pending)) {
            watched.sort();
            watched.dedup();
            if let Some(key) = key(args, cwd, &watched) {
                let record = Record { key, watched, command, env, artifact };
                if let Ok(text) = serde_json::to_string(&record) {
                    let _ = std::fs::write(cwd.join(RECORD_FILE), text);
                }
            }
        }
    }
    let _ = std::fs::remove_file(&pending);
    code
}

/// The cell crate's rustc command as cargo would run it now, for the type probe when there is
/// no current record: cargo builds what the dependencies need and runs the recording wrapper
/// for the cell crate, whose build may fail (its placeholders are not defined yet). Cargo's
/// messages are not evcxr's business here and are dropped.
fn command_from_cargo(real_cargo: &OsString, args: &[OsString], cwd: &Path) -> Option<super::type_probe::RustcCommand> {
    let pending = cwd.join("target/torchbook-probe-rustc.json");
    let _ = std::fs::remove_file(&pending);
    let status = real_cargo_command(real_cargo, args)
        .env("RUSTC_WRAPPER", std::env::current_exe().ok()?)
        .env(RECORD_ENV, &pending)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let command = load_pending(&pending);
    let _ = std::fs::remove_file(&pending);
    trace(&format!("cargo ran for the type probe's rustc command ({:?}, {})", status.map(|s| s.code()), if command.is_some() { "got it" } else { "none" }));
    command
}

/// The package folder of a `path+file://` dependency in a cargo message.
fn path_dependency_folder(message: &serde_json::Value) -> Option<PathBuf> {
    let package_id = message["package_id"].as_str()?;
    if !package_id.starts_with("path+file://") {
        return None;
    }
    Some(Path::new(message["manifest_path"].as_str()?).parent()?.to_owned())
}

fn load_pending(path: &Path) -> Option<(Vec<String>, Vec<(String, String)>)> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn load_record(cwd: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(cwd.join(RECORD_FILE)).ok()?).ok()
}

enum Replayed {
    /// rustc ran; what cargo would print, not printed yet.
    Done(ReplayOutput),
    /// The dependencies are not what the record expects: let cargo build.
    NeedsCargo,
}

/// A replayed build's exit code and what cargo would have written, held back until the caller
/// knows it wants them (a build with guessed types that fails is retried, and its errors
/// are not the cell's).
struct ReplayOutput {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl ReplayOutput {
    fn pass_on(self) -> i32 {
        let _ = std::io::stdout().lock().write_all(&self.stdout);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().lock().write_all(&self.stderr);
        self.code
    }
}

/// Runs the recorded rustc, translating its messages into cargo's.
fn replay(record: &Record, cwd: &Path) -> Replayed {
    let Some((program, args)) = record.command.split_first() else {
        return Replayed::NeedsCargo;
    };
    let Ok(artifact) = serde_json::from_str::<serde_json::Value>(&record.artifact) else {
        return Replayed::NeedsCargo;
    };
    let mut command = Command::new(program);
    // libtorch's libraries as empty stand-ins at link time, found first (see `cell_link`).
    command.args(super::cell_link::replay_arguments(cwd));
    command.args(args).env_clear().envs(record.env.iter().map(|(k, v)| (k, v)));
    let mut child = match command
        .current_dir(cwd)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => return Replayed::NeedsCargo,
    };
    let stderr = child.stderr.take().expect("piped");
    let mut messages = Vec::new();
    let mut other = Vec::new();
    let mut errors = 0;
    for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(diagnostic) if diagnostic["$message_type"] == "diagnostic" => {
                if diagnostic["level"] == "error" {
                    errors += 1;
                    let code = diagnostic["code"]["code"].as_str().unwrap_or_default();
                    if STALE_DEPENDENCY_ERRORS.contains(&code) {
                        let _ = child.wait();
                        return Replayed::NeedsCargo;
                    }
                }
                messages.push(compiler_message(&artifact, diagnostic));
            }
            Ok(_) => {} // artifact notices and future-incompat reports: cargo consumes them
            Err(_) => other.push(line),
        }
    }
    let success = child.wait().is_ok_and(|status| status.success());
    let mut out = Vec::new();
    let mut err = Vec::new();
    for message in &messages {
        let _ = writeln!(out, "{message}");
    }
    let mut code = if success { 0 } else { 101 };
    if success {
        if let Err(e) = uplift(&artifact, args) {
            let _ = writeln!(err, "torchbook: the cell library was built but cannot be put in place: {e}");
            code = 101;
        } else {
            let _ = writeln!(out, "{}", record.artifact);
        }
    }
    let _ = writeln!(out, "{}", serde_json::json!({"reason": "build-finished", "success": code == 0}));
    for line in &other {
        let _ = writeln!(err, "{line}");
    }
    if !success {
        let plural = if errors == 1 { "" } else { "s" };
        let _ = writeln!(err, "error: could not compile `{CELL_CRATE}` (lib) due to {errors} previous error{plural}");
    }
    Replayed::Done(ReplayOutput { code, stdout: out, stderr: err })
}

/// Links rustc's output in `--out-dir` to the paths cargo reports (as cargo does: evcxr moves
/// the reported file away after each cell).
fn uplift(artifact: &serde_json::Value, rustc_args: &[String]) -> std::io::Result<()> {
    let out_dir = rustc_args
        .windows(2)
        .find(|w| w[0] == "--out-dir")
        .map(|w| PathBuf::from(&w[1]))
        .ok_or_else(|| std::io::Error::other("the recorded rustc command has no --out-dir"))?;
    for reported in artifact["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
        let reported = Path::new(reported);
        let Some(name) = reported.file_name() else { continue };
        let built = out_dir.join(name);
        if built != reported {
            let _ = std::fs::remove_file(reported);
            if std::fs::hard_link(&built, reported).is_err() {
                std::fs::copy(&built, reported)?;
            }
        }
    }
    Ok(())
}

/// A rustc diagnostic as cargo reports it with `--message-format=json`.
fn compiler_message(artifact: &serde_json::Value, diagnostic: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "reason": "compiler-message",
        "package_id": artifact["package_id"],
        "manifest_path": artifact["manifest_path"],
        "target": artifact["target"],
        "message": diagnostic,
    })
}

/// The hash of everything that would make cargo do more than rerun the cell crate's rustc.
/// `None` when something cannot be read (then cargo runs).
fn key(args: &[OsString], cwd: &Path, watched: &[PathBuf]) -> Option<String> {
    let mut hash = Sha256::new();
    let mut add = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for arg in args {
        add(arg.as_encoded_bytes());
    }
    add(cwd.as_os_str().as_encoded_bytes());
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    env.sort();
    for (name, value) in &env {
        add(name.as_encoded_bytes());
        add(value.as_encoded_bytes());
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        add(&std::fs::read(cwd.join(file)).ok()?);
    }
    // Cargo merges the configs of every folder above the crate and of CARGO_HOME.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let config_folders = cwd.ancestors().map(|a| a.join(".cargo")).chain(cargo_home);
    for folder in config_folders {
        for name in ["config.toml", "config"] {
            if let Ok(text) = std::fs::read(folder.join(name)) {
                add(folder.join(name).as_os_str().as_encoded_bytes());
                add(&text);
            }
        }
    }
    for folder in watched {
        add(folder.as_os_str().as_encoded_bytes());
        add_tree_stamp(folder, &mut add).ok()?;
    }
    Some(hex::encode(hash.finalize()))
}

/// Adds every file's path, size and modification time under `folder` (not `target/` or hidden
/// folders), in a fixed order: cargo rebuilds a path dependency when one of them changes.
fn add_tree_stamp(folder: &Path, add: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(folder)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if name == "target" || name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            add_tree_stamp(&entry.path(), add)?;
        } else {
            let metadata = std::fs::metadata(entry.path())?;
            let modified = metadata.modified()?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            add(entry.path().as_os_str().as_encoded_bytes());
            add(&metadata.len().to_le_bytes());
            add(&modified.as_nanos().to_le_bytes());
        }
    }
    Ok(())
}

/// The rustc wrapper while cargo builds for a record: saves the cell crate's command and
/// environment, then runs rustc. Returns rustc's exit code.
pub fn run_as_rustc_recorder() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let rustc = args.next().expect("role() checked there is one");
    let args: Vec<OsString> = args.collect();
    let is_cell = args.windows(2).any(|w| w[0] == "--crate-name" && w[1] == CELL_CRATE);
    if is_cell {
        if let Some(path) = std::env::var_os(RECORD_ENV) {
            let command: Option<Vec<String>> =
                std::iter::once(&rustc).chain(&args).map(|a| a.clone().into_string().ok()).collect();
            let env = replayable_env(std::env::vars_os());
            // Not UTF-8 somewhere: no record, and cargo keeps building the cells.
            if let (Some(command), Some(env)) = (command, env) {
                if let Ok(text) = serde_json::to_vec(&(command, env)) {
                    let _ = std::fs::write(path, text);
                }
            }
        }
    }
    exit_code(Command::new(rustc).args(args).env_remove(RECORD_ENV).status())
}

/// The environment cargo gave rustc, as a replay may give it again: without our own variable,
/// and without cargo's jobserver (`CARGO_MAKEFLAGS` names descriptors of cargo's process, which
/// in a replay are closed or something else; rustc without one makes its own). `None` when a
/// variable is not UTF-8.
fn replayable_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Option<Vec<(String, String)>> {
    vars.filter(|(name, _)| name != RECORD_ENV && name != "CARGO_MAKEFLAGS")
        .map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    match status {
        Ok(status) => status.code().unwrap_or(101),
        Err(e) => {
            eprintln!("torchbook: cannot run the build: {e}");
            101
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// evcxr keeps cargo's stderr to itself, so the stand-in's account of each build goes to the
/// file `TORCHBOOK_CELL_BUILD_LOG` names, when set.
fn trace(what: &str) {
    if let Some(path) = std::env::var_os(LOG_ENV) {
        if let Ok(mut log) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(log, "{what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tb-cell-build-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"ctx\"\n").unwrap();
        std::fs::write(dir.join("Cargo.lock"), "# lock\n").unwrap();
        dir
    }

    #[test]
    fn key_changes_with_what_cargo_would_look_at() {
        let crate_dir = folder("crate");
        let dependency = folder("dep");
        std::fs::write(dependency.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
        std::fs::create_dir_all(dependency.join("target")).unwrap();
        let args: Vec<OsString> = ["build", "--message-format=json"].map(OsString::from).to_vec();
        let watched = vec![dependency.clone()];
        let first = key(&args, &crate_dir, &watched).unwrap();
        assert_eq!(key(&args, &crate_dir, &watched).unwrap(), first, "the key is stable");

        // The cell's own source is not part of it: every cell changes it.
        std::fs::write(crate_dir.join("src/lib.rs"), "fn cell() {}\n").unwrap();
        // Nor is a path dependency's build output.
        std::fs::write(dependency.join("target/x"), "output").unwrap();
        assert_eq!(key(&args, &crate_dir, &watched).unwrap(), first);

        let other_args: Vec<OsString> = ["build", "--release", "--message-format=json"].map(OsString::from).to_vec();
        assert_ne!(key(&other_args, &crate_dir, &watched).unwrap(), first);
        std::fs::write(crate_dir.join("Cargo.toml"), "[package]\nname = \"ctx\"\n[dependencies]\nrand = \"0.9\"\n").unwrap();
        let with_dependency = key(&args, &crate_dir, &watched).unwrap();
        assert_ne!(with_dependency, first, "a :dep changes the manifest");
        std::fs::write(dependency.join("src/new.rs"), "pub fn g() {}\n").unwrap();
        assert_ne!(key(&args, &crate_dir, &watched).unwrap(), with_dependency, "a path dependency's new file");
        std::fs::remove_dir_all(crate_dir).unwrap();
        assert!(key(&args, &dependency, &watched).is_some());
        std::fs::remove_dir_all(dependency).unwrap();
    }

    #[test]
    fn only_cargo_build_with_json_messages_is_replayed() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(replayable(&args(&["build", "--target", "x86_64-unknown-linux-gnu", "--message-format=json"])));
        assert!(replayable(&args(&["--offline", "build", "--message-format=json"])));
        assert!(!replayable(&args(&["check", "--message-format=json"])));
        assert!(!replayable(&args(&["build"])));
        assert!(!replayable(&args(&["metadata", "--message-format=json"])));
    }

    #[test]
    fn diagnostics_are_wrapped_as_cargo_does() {
        let artifact = serde_json::json!({
            "reason": "compiler-artifact",
            "package_id": "path+file:///tmp/k/evcxr#ctx@1.0.0",
            "manifest_path": "/tmp/k/evcxr/Cargo.toml",
            "target": {"name": "ctx", "kind": ["cdylib"]},
        });
        let diagnostic = serde_json::json!({"$message_type": "diagnostic", "message": "mismatched types", "level": "error"});
        let message = compiler_message(&artifact, diagnostic.clone());
        assert_eq!(message["reason"], "compiler-message");
        assert_eq!(message["target"]["name"], "ctx");
        assert_eq!(message["message"], diagnostic);
    }

    #[test]
    fn recorded_environment_leaves_out_cargos_jobserver() {
        let vars = [("CARGO_PKG_NAME", "ctx"), ("CARGO_MAKEFLAGS", "-j --jobserver-fds=8,9 --jobserver-auth=8,9"), (RECORD_ENV, "/x")];
        let env = replayable_env(vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v)))).unwrap();
        assert_eq!(env, [("CARGO_PKG_NAME".to_owned(), "ctx".to_owned())]);
        use std::os::unix::ffi::OsStringExt;
        let not_utf8 = [(OsString::from("A"), OsString::from_vec(vec![0xff]))];
        assert!(replayable_env(not_utf8.into_iter()).is_none());
    }

    #[test]
    fn path_dependencies_are_recognised() {
        let path = serde_json::json!({"package_id": "path+file:///work/runtime#torchbook@0.1.0", "manifest_path": "/work/runtime/Cargo.toml"});
        assert_eq!(path_dependency_folder(&path), Some(PathBuf::from("/work/runtime")));
        let registry = serde_json::json!({"package_id": "registry+https://github.com/rust-lang/crates.io-index#tch@0.26.0", "manifest_path": "/r/tch/Cargo.toml"});
        assert_eq!(path_dependency_folder(&registry), None);
    }
}
