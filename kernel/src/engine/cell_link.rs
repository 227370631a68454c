//! Linking replayed cell builds without reading libtorch's libraries.
//!
//! A cell library links against libtorch (`-ltorch_cpu -ltorch -lc10 …`, from `torch-sys`'s
//! build script), and the linker reads those libraries' symbol tables for every cell —
//! `libtorch_cpu.so` alone exports well over 100,000 symbols — only to find the few a cell
//! calls. The worker has libtorch in its global scope (`worker::libtorch`), where the
//! dynamic loader binds a cell's references to it. So the replayed rustc gets one more
//! library search folder, ahead of all others ([`replay_arguments`]), in which each of
//! libtorch's libraries is an empty linker script: the linker finds those first, reads
//! nothing, and leaves the references for the loader. rustc keeps its own linker and flags
//! (`cc` with the toolchain's `rust-lld`). Only while the worker says it has libtorch (its
//! marker in evcxr's folder); `TORCHBOOK_CELL_FULL_LINK=1` keeps the real libraries.
//! Measured in docs/PERFORMANCE.md.

use std::path::{Path, PathBuf};

/// libtorch's libraries, replaced at link time.
const LEFT_OUT: [&str; 5] = ["torch_cpu", "torch", "c10", "torch_cuda", "c10_cuda"];
/// The folder of empty stand-ins, in the cell crate's target folder.
const STUB_DIR: &str = "target/torchbook-link-stubs";
/// An empty linker script: a valid input for ld.bfd, gold, lld and mold that defines nothing.
const STUB_TEXT: &str = "/* torchbook: libtorch is already loaded in the worker (engine/cell_link.rs) */\n";

/// Arguments to put before the recorded rustc command's own for a replayed build of the cell
/// crate in `crate_dir`; none unless the worker has loaded libtorch globally, or when
/// `TORCHBOOK_CELL_FULL_LINK=1` or the stand-ins cannot be written.
pub fn replay_arguments(crate_dir: &Path) -> Vec<String> {
    if std::env::var("TORCHBOOK_CELL_FULL_LINK").is_ok_and(|v| v == "1") || !crate_dir.join(crate::wire::worker::LIBTORCH_GLOBAL_MARKER).exists() {
        return Vec::new();
    }
    match stub_folder(crate_dir) {
        Ok(folder) => vec!["-L".to_owned(), format!("native={}", folder.display())],
        Err(e) => {
            eprintln!("torchbook: cannot write libtorch's link stand-ins ({e}); cells link the real libraries");
            Vec::new()
        }
    }
}

/// The stand-ins' folder, written the first time.
fn stub_folder(crate_dir: &Path) -> std::io::Result<PathBuf> {
    let folder = crate_dir.join(STUB_DIR);
    if !folder.join(format!("lib{}.so", LEFT_OUT[LEFT_OUT.len() - 1])).exists() {
        std::fs::create_dir_all(&folder)?;
        // The last one written is the one checked above, so a folder half written is finished.
        for name in LEFT_OUT {
            std::fs::write(folder.join(format!("lib{name}.so")), STUB_TEXT)?;
        }
    }
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_only_once_the_worker_has_libtorch() {
        let dir = std::env::temp_dir().join(format!("torchbook-link-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("target")).unwrap();
        assert!(replay_arguments(&dir).is_empty(), "the worker has not said it has libtorch");
        std::fs::write(dir.join(crate::wire::worker::LIBTORCH_GLOBAL_MARKER), "").unwrap();
        let args = replay_arguments(&dir);
        assert_eq!(args[0], "-L");
        let folder = PathBuf::from(args[1].strip_prefix("native=").unwrap());
        for name in LEFT_OUT {
            assert_eq!(std::fs::read_to_string(folder.join(format!("lib{name}.so"))).unwrap(), STUB_TEXT);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The linker rustc uses accepts a stand-in and leaves the symbol for the loader.
    #[test]
    fn the_linker_takes_an_empty_script_for_a_library() {
        let dir = std::env::temp_dir().join(format!("torchbook-link-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libtorch_cpu.so"), STUB_TEXT).unwrap();
        std::fs::write(dir.join("cell.c"), "extern int at_ones(void);\nint cell(void) { return at_ones(); }\n").unwrap();
        let status = std::process::Command::new("cc")
            .current_dir(&dir)
            .args(["-shared", "-fPIC", "-o", "libcell.so", "cell.c", "-L.", "-ltorch_cpu"])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
