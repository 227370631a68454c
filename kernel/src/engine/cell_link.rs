//! The linker for replayed cell builds: rustc's own (`cc` with `rust-lld`), without libtorch's
//! libraries.
//!
//! A cell library links against libtorch (`-ltorch_cpu -ltorch -lc10 …`, from `torch-sys`'s
//! build script), and the linker reads those libraries' symbol tables for every cell —
//! `libtorch_cpu.so` alone exports well over 100,000 symbols — only to find the few a cell
//! calls. The worker has libtorch in its global scope (`worker::libtorch`), where the
//! dynamic loader binds a cell's references to it, so the replayed rustc runs this
//! executable as its linker ([`replay_arguments`]), which leaves those `-l`s out and runs
//! `cc` with the toolchain's `rust-lld`. Only while the worker says it has libtorch (its
//! marker in evcxr's folder); `TORCHBOOK_CELL_FULL_LINK=1` keeps the real libraries.
//! Measured in docs/PERFORMANCE.md.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// Set in the replayed rustc's environment; rustc passes it on to its linker.
pub const LINKER_ENV: &str = "TORCHBOOK_CELL_LINKER";
/// libtorch's libraries, left out of the link.
const LEFT_OUT: [&str; 5] = ["torch_cpu", "torch", "c10", "torch_cuda", "c10_cuda"];

/// The `-C linker=` argument and environment for a replayed build of the cell crate in
/// `crate_dir`, unless the worker has not loaded libtorch globally, the recorded command
/// names a linker of its own, or `TORCHBOOK_CELL_FULL_LINK=1`.
pub fn replay_arguments(command: &[String], crate_dir: &Path) -> Option<(Vec<String>, (String, String))> {
    if std::env::var("TORCHBOOK_CELL_FULL_LINK").is_ok_and(|v| v == "1") || !crate_dir.join(crate::wire::worker::LIBTORCH_GLOBAL_MARKER).exists() {
        return None;
    }
    if command.iter().any(|a| a.starts_with("linker=") || a.starts_with("-Clinker=")) {
        return None;
    }
    let this = std::env::current_exe().ok()?.to_str()?.to_owned();
    Some((vec!["-C".to_owned(), format!("linker={this}")], (LINKER_ENV.to_owned(), "1".to_owned())))
}

/// Runs `cc` with rustc's linker arguments, libtorch's libraries left out, through the
/// toolchain's `rust-lld` as rustc's own default link does. Returns the exit code.
pub fn run_as_linker() -> i32 {
    let mut args: Vec<OsString> = self_contained_lld();
    args.extend(std::env::args_os().skip(1).filter(|arg| !is_left_out(arg)));
    match Command::new("cc").args(&args).env_remove(LINKER_ENV).status() {
        Ok(status) => status.code().unwrap_or(101),
        Err(e) => {
            eprintln!("torchbook: cannot run the linker `cc`: {e}");
            101
        }
    }
}

/// rustc 1.95 links x86_64 Linux code with the toolchain's `rust-lld` (`-fuse-ld=lld` and
/// `-B` its `gcc-ld` folder), but leaves both out once `-C linker=` names another program, as
/// the replay does; without them `cc` runs the system's `ld.bfd`, slower on every cell. Empty
/// when the toolchain has no `gcc-ld` (then rustc would not have used lld either).
fn self_contained_lld() -> Vec<OsString> {
    let gcc_ld = Path::new(super::cell_build::BUILD_SYSROOT).join("lib/rustlib").join(env!("TORCHBOOK_TARGET")).join("bin/gcc-ld");
    if !gcc_ld.join("ld.lld").exists() {
        return Vec::new();
    }
    let mut dash_b = OsString::from("-B");
    dash_b.push(gcc_ld.as_os_str());
    vec![dash_b, OsString::from("-fuse-ld=lld")]
}

fn is_left_out(arg: &OsString) -> bool {
    arg.to_str().and_then(|a| a.strip_prefix("-l")).is_some_and(|name| LEFT_OUT.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_libtorchs_libraries_are_left_out() {
        let kept: Vec<&str> = ["-lstdc++", "-ltorch_cpu", "-ltorch", "-lc10", "-lgomp", "-o", "-ltorchvision"]
            .into_iter()
            .filter(|a| !is_left_out(&OsString::from(a)))
            .collect();
        assert_eq!(kept, ["-lstdc++", "-lgomp", "-o", "-ltorchvision"]);
    }

    #[test]
    fn no_marker_no_changed_linker() {
        let dir = std::env::temp_dir().join(format!("torchbook-link-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("target")).unwrap();
        let command = vec!["rustc".to_owned()];
        assert!(replay_arguments(&command, &dir).is_none(), "the worker has not said it has libtorch");
        std::fs::write(dir.join(crate::wire::worker::LIBTORCH_GLOBAL_MARKER), "").unwrap();
        let (args, env) = replay_arguments(&command, &dir).unwrap();
        assert!(args[1].starts_with("linker="));
        assert_eq!(env.0, LINKER_ENV);
        let own = vec!["rustc".to_owned(), "-C".to_owned(), "linker=clang".to_owned()];
        assert!(replay_arguments(&own, &dir).is_none(), "a linker of the user's stays");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
