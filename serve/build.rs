//! Gives `torchbook-serve` an rpath to the libtorch it was built against (torch-sys's
//! `DEP_TCH_LIBTORCH_LIB`), so it starts without `LD_LIBRARY_PATH` (DESIGN §4).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=build.rs");
}
