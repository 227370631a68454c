//! Records facts about the toolchain the kernel was built with (evcxr compiles cells with the
//! same one): the rustc version for `kernel_info`, and where its shared `libstd` lives.
fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TORCHBOOK_RUSTC_VERSION={version}");
    // The toolchain's sysroot: cells are built with its cargo and rustc (`cell_build`), and
    // its `lib/rustlib/<target>/lib` (the shared `libstd-*.so`) goes on the worker's library
    // path (`prelude::prepare_library_path`): cells are built with `-C prefer-dynamic`, and the
    // relative RUNPATH rustc gives them does not survive evcxr copying the library one folder
    // up. `TORCHBOOK_TOOLCHAIN` names another copy of it at run time (a shared install's).
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    // evcxr builds cells for this target, into `target/<target>/debug` of its folder.
    println!("cargo:rustc-env=TORCHBOOK_TARGET={target}");
    println!("cargo:rustc-env=TORCHBOOK_RUST_SYSROOT={sysroot}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    // The worker's interrupt flag must be visible to cell libraries through dlsym.
    println!("cargo:rustc-link-arg-bin=torchbook=-Wl,--export-dynamic-symbol=torchbook_interrupt_flag");
}
