//! Compiles csrc/c10d_shim.cpp against the headers of the libtorch that torch-sys links (its
//! `links = "tch"` metadata gives the lib folder) and Debian's libgloo-dev headers, which
//! ProcessGroupGloo.hpp includes and the torch wheel does not ship.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch lib folder"),
    );
    let root = lib.parent().expect("libtorch lib folder has a parent").to_path_buf();
    let gloo = std::env::var("GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    if !gloo.join("gloo/config.h").exists() {
        panic!(
            "Gloo's headers are missing ({}): install Debian's libgloo-dev (the Makefile does), or set GLOO_INCLUDE",
            gloo.join("gloo/config.h").display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .define("USE_DISTRIBUTED", None)
        .file("csrc/c10d_shim.cpp")
        .compile("torchbook_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
