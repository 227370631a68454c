//! Compiles csrc/c10d_shim.cpp against the headers of the libtorch that torch-sys links (its
//! `links = "tch"` metadata gives the lib folder) and Debian's libgloo-dev headers, which
//! ProcessGroupGloo.hpp includes and the torch wheel does not ship.
//!
//! With `TORCHBOOK_NCCL=1` (`make gpu`, `make gpu-kit`) it also compiles csrc/c10d_nccl.cpp
//! (ProcessGroupNCCL), which needs a libtorch with CUDA (lib/libtorch_cuda.so) and NCCL's and
//! CUDA's headers: `NCCL_INCLUDE` and `CUDA_INCLUDE` (folders separated by `:`), by default
//! the nvidia-* wheels' include folders next to the torch package when libtorch is a wheel's
//! (`site-packages/torch`), then /usr/local/cuda/include. (The CUDA 13 runtime wheel lacks
//! crt/ and nv/target, which cuda_runtime.h includes: the Makefile adds the nvidia-cuda-crt and
//! nvidia-cuda-cccl wheels' folders.) It links torch_cuda and c10_cuda and sets the cfg `torchbook_nccl`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/c10d_nccl.cpp");
    println!("cargo:rerun-if-changed=csrc/c10d_common.h");
    for var in ["GLOO_INCLUDE", "TORCHBOOK_NCCL", "NCCL_INCLUDE", "CUDA_INCLUDE"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(torchbook_nccl)");
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
    let nccl = std::env::var("TORCHBOOK_NCCL").is_ok_and(|v| v == "1");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include("csrc")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .define("USE_DISTRIBUTED", None)
        .file("csrc/c10d_shim.cpp");
    if nccl {
        if !lib.join("libtorch_cuda.so").exists() {
            panic!(
                "TORCHBOOK_NCCL=1 needs a libtorch with CUDA, and {} has no libtorch_cuda.so (CPU-only libtorch): \
                 point LIBTORCH at the CUDA torch wheel's `torch` folder (`make gpu` does)",
                lib.display()
            );
        }
        for dir in nccl_includes(&root) {
            build.include(dir);
        }
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).file("csrc/c10d_nccl.cpp");
    }
    build.compile("torchbook_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if nccl {
        println!("cargo:rustc-cfg=torchbook_nccl");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// NCCL's and CUDA's include folders for the NCCL shim; panics naming what is missing.
fn nccl_includes(root: &Path) -> Vec<PathBuf> {
    // A wheel's libtorch: site-packages/torch, with the nvidia-* wheels beside it.
    let nvidia = root.parent().map(|p| p.join("nvidia")).filter(|p| p.is_dir());
    let mut dirs = Vec::new();
    let nccl = match std::env::var("NCCL_INCLUDE") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => nvidia.as_ref().map(|n| n.join("nccl/include")).unwrap_or_else(|| PathBuf::from("/usr/include")),
    };
    if !nccl.join("nccl.h").exists() {
        panic!(
            "TORCHBOOK_NCCL=1: NCCL's header {} is missing: set NCCL_INCLUDE to the folder with nccl.h \
             (the nvidia-nccl wheel's nvidia/nccl/include)",
            nccl.join("nccl.h").display()
        );
    }
    dirs.push(nccl);
    match std::env::var("CUDA_INCLUDE") {
        Ok(list) => dirs.extend(std::env::split_paths(&list)),
        Err(_) => {
            // Every nvidia-* wheel's include folder: cu13 wheels share nvidia/cu13/include, cu12
            // ones have nvidia/cuda_runtime/include, nvidia/cublas/include, ...
            if let Some(nvidia) = &nvidia {
                let mut found: Vec<PathBuf> = std::fs::read_dir(nvidia)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("include"))
                    .filter(|p| p.is_dir())
                    .collect();
                found.sort();
                // CCCL (nv/target, cuda/std) sits in include/cccl when the cccl wheel is there.
                let cccl: Vec<PathBuf> = found.iter().map(|d| d.join("cccl")).filter(|d| d.is_dir()).collect();
                dirs.extend(found);
                dirs.extend(cccl);
            }
            dirs.push(PathBuf::from("/usr/local/cuda/include"));
        }
    }
    for (header, from) in [
        ("cuda_runtime_api.h", "the nvidia-cuda-runtime wheel's include folder"),
        ("crt/host_config.h", "the nvidia-cuda-crt wheel's include folder, which the runtime wheel lacks"),
        ("nv/target", "the nvidia-cuda-cccl wheel's include/cccl folder, which the runtime wheel lacks"),
    ] {
        if !dirs.iter().any(|d| d.join(header).exists()) {
            panic!(
                "TORCHBOOK_NCCL=1: CUDA's header {header} is in none of {dirs:?}: set CUDA_INCLUDE, a list of \
                 folders separated by `:`, to include {from} (or /usr/local/cuda/include); `make gpu` does"
            );
        }
    }
    dirs
}
