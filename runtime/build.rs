//! Exports tch's C wrapper functions from the runtime's shared library.
//!
//! Cells link `libtorchbook.so` (the runtime built as a Rust dylib, with tch and `torch-sys`
//! inside). tch's generic and inlined functions are instantiated in the cell itself and call
//! `torch-sys`'s C functions (`atg_sum`, `at_shallow_clone`, …) directly; rustc's version
//! script for a dylib exports Rust symbols only, so without this those calls would be
//! undefined when the worker loads the cell. Exporting the copy inside the dylib (rather than
//! linking a second copy into each cell) keeps one `torch_last_err`, so a libtorch error
//! raised in a cell's instantiation is read back by tch's error check in the dylib.
fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let map = out.join("tch-c-api.map");
    // The prefixes of every function `torch-sys` declares (its `src/c_generated.rs`, `src/lib.rs`).
    let script = "{\n  global: at_*; atc_*; atg_*; ati_*; atm_*; ato_*; ats_*; get_and_reset_last_err;\n};\n";
    std::fs::write(&map, script).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-arg=-Wl,--version-script={}", map.display());
    println!("cargo:rerun-if-changed=build.rs");
}
