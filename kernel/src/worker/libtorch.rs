//! libtorch in the worker's global symbol scope, loaded when the worker starts, so that cell
//! libraries can be linked without it (see `engine::cell_link`).
//!
//! evcxr loads each cell library with `RTLD_LOCAL`: a library it needs is found by its own
//! `DT_NEEDED` entries, not by what earlier cells loaded. Linked without libtorch, a cell's
//! references to it resolve only against the global scope, which is where this puts it. It
//! also moves libtorch's loading (≈ 0.3 s, the first tch cell's "Execution" before) to the
//! worker's start, which overlaps the engine's prelude cell. CUDA's libraries join when they
//! load (a GPU build); on a CPU build they cannot, and no cell needs them. The worker then
//! writes `target/torchbook-libtorch-global` in evcxr's folder: the stand-in links cells
//! without libtorch only while that says the worker has it.

use std::path::Path;
use crate::wire::worker::LIBTORCH_GLOBAL_MARKER as MARKER;

/// In dependency order; the first three are required for the marker.
const LIBRARIES: [(&str, bool); 5] = [
    ("libc10.so", true),
    ("libtorch_cpu.so", true),
    ("libtorch.so", true),
    ("libc10_cuda.so", false),
    ("libtorch_cuda.so", false),
];

/// Loads libtorch (`$LIBTORCH/lib`) with `RTLD_GLOBAL` and writes the marker; without
/// `LIBTORCH`, or when a required library does not load, removes the marker instead.
pub fn load_globally() {
    let folder = std::env::var_os("EVCXR_TMPDIR").map(std::path::PathBuf::from);
    let loaded = std::env::var_os("LIBTORCH").is_some_and(|libtorch| {
        let lib = Path::new(&libtorch).join("lib");
        LIBRARIES.iter().all(|(name, required)| load(&lib.join(name)) || !required)
    });
    if let Some(folder) = folder {
        let marker = folder.join(MARKER);
        if loaded {
            let _ = std::fs::create_dir_all(folder.join("target"));
            let _ = std::fs::write(&marker, b"");
        } else {
            let _ = std::fs::remove_file(&marker);
        }
    }
}

fn load(path: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: a NUL-terminated path; the handle is kept for the process's life on purpose.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_GLOBAL) };
    !handle.is_null()
}
