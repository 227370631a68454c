//! The `cargo metadata` answer rust-analyzer gets for a cell crate: the real one, pruned to the
//! crates whose types a cell can name, and cached.
//!
//! evcxr asks rust-analyzer for the type of every new variable, and rust-analyzer loads the
//! whole dependency graph `cargo metadata` reports: every `.rs` file of every package (the
//! prelude's closure is about 130 packages and 42 MB of source), each time the cell crate's
//! `Cargo.toml` changes. Cells name the types of the crates they depend on (the prelude,
//! `:dep`s) and of those crates' own dependencies (`tch::Tensor`, `image::RgbImage` through the
//! runtime); deeper crates (`torch-sys`, `zip`, `plotters`' font stack, …) only matter to
//! rust-analyzer for the bodies and private fields of what cells call. So the stand-in answers
//! with the packages at most [`DEPTH`] normal-dependency edges from the cell crate; a type that
//! needs a pruned crate comes out unknown, and evcxr then asks the user to annotate it, as it
//! does for any type it cannot name.
//!
//! Answers are cached in the crate's target folder, keyed by the arguments and the manifest
//! and lock file they came from: rust-analyzer asks twice per reload (with and without
//! `--no-deps`), and cargo takes ≈ 0.3–0.7 s per answer. `TORCHBOOK_RA_FULL_GRAPH=1` turns
//! the pruning off (the answer is then cargo's own, still cached).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How many dependency edges from the cell crate a package may be and still be loaded.
pub const DEPTH: usize = 2;
const CACHE_DIR: &str = "target/torchbook-metadata";

/// The cell crate's folder when `args` is a `cargo metadata` call for it (rust-analyzer
/// passes `--manifest-path`; the sysroot's own metadata call is for another manifest).
pub fn cell_metadata_call(args: &[OsString], cwd: &Path) -> Option<PathBuf> {
    let first_command = args.iter().find(|a| !a.to_string_lossy().starts_with('-'));
    if !first_command.is_some_and(|c| c == "metadata") {
        return None;
    }
    let manifest = args
        .iter()
        .position(|a| a == "--manifest-path")
        .and_then(|i| args.get(i + 1))
        .map(|m| cwd.join(m))
        .unwrap_or_else(|| cwd.join("Cargo.toml"));
    let dir = manifest.parent()?.to_path_buf();
    (dir.join("src/lib.rs").exists() && is_cell_crate(&manifest)).then_some(dir)
}

fn is_cell_crate(manifest: &Path) -> bool {
    std::fs::read_to_string(manifest).is_ok_and(|text| text.lines().any(|l| l.trim() == "name = \"ctx\""))
}

/// The package name evcxr gives the manifest it writes to check a new `:dep` (`validate_dep`).
const DEPENDENCY_CHECK_PACKAGE: &str = "evcxr_dummy_validate_dep";

/// True when `args` is evcxr's check of a new `:dep`: `cargo metadata` on a throw-away
/// manifest in the cell crate's folder.
pub fn dependency_check_call(args: &[OsString], cwd: &Path) -> bool {
    let first_command = args.iter().find(|a| !a.to_string_lossy().starts_with('-'));
    first_command.is_some_and(|c| c == "metadata")
        && std::fs::read_to_string(cwd.join("Cargo.toml"))
            .is_ok_and(|text| text.lines().any(|l| l.trim() == format!("name = \"{DEPENDENCY_CHECK_PACKAGE}\"")))
}

/// Answers evcxr's `:dep` check from the cache when the same dependency was checked before,
/// in this folder or in the prelude cache it was seeded from. Cargo resolves the whole graph
/// afresh for the throw-away package (its lock file is the cell crate's): ≈ 2 s of a cold
/// kernel's prelude cell for the prelude's own `:dep`. Only successful checks are kept, keyed
/// by the arguments, the manifest (which names the dependency) and the manifests of the path
/// dependencies it names, with the lock file cargo leaves, which a hit puts in place as cargo
/// would; `run` runs the real cargo (exit code, stdout, stderr).
pub fn answer_dependency_check(args: &[OsString], cwd: &Path, run: &dyn Fn() -> (i32, Vec<u8>, Vec<u8>)) -> (i32, bool) {
    let key = dependency_check_key(args, cwd);
    let cached = key.map(|k| cwd.join(CACHE_DIR).join(format!("dep-check-{k}")));
    if let Some(answer) = cached.as_ref().and_then(|path| std::fs::read(path).ok()) {
        if let Ok((stdout, stderr, lock)) = serde_json::from_slice::<(String, String, Option<String>)>(&answer) {
            // What cargo would have left behind: the lock file it resolved, which the cell
            // crate's next `cargo metadata` and build then find up to date.
            if let Some(lock) = lock {
                let _ = std::fs::write(cwd.join("Cargo.lock"), lock);
            }
            print(stdout.as_bytes());
            eprint!("{stderr}");
            return (0, true);
        }
    }
    let (code, stdout, stderr) = run();
    if code == 0 {
        if let Some(path) = &cached {
            let lock = std::fs::read_to_string(cwd.join("Cargo.lock")).ok();
            let answer = (String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned(), lock);
            let _ = std::fs::create_dir_all(cwd.join(CACHE_DIR));
            if let Ok(text) = serde_json::to_vec(&answer) {
                let _ = std::fs::write(path, text);
            }
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().write_all(&stdout);
    let _ = std::io::stderr().write_all(&stderr);
    (code, false)
}

fn dependency_check_key(args: &[OsString], cwd: &Path) -> Option<String> {
    let mut hash = Sha256::new();
    for arg in args {
        hash.update(arg.as_encoded_bytes());
        hash.update(b"\0");
    }
    let manifest = std::fs::read_to_string(cwd.join("Cargo.toml")).ok()?;
    hash.update(manifest.as_bytes());
    // `path = "…"` dependencies: their own manifests decide what resolves.
    for (at, _) in manifest.match_indices("path = \"") {
        let rest = &manifest[at + "path = \"".len()..];
        let Some(end) = rest.find('"') else { continue };
        let folder = cwd.join(&rest[..end]);
        if folder.is_dir() {
            hash.update(std::fs::read(folder.join("Cargo.toml")).ok()?);
        }
    }
    Some(hex::encode(&hash.finalize()[..12]))
}

/// How a `cargo metadata` call was answered.
pub struct Answered {
    pub code: i32,
    pub from_cache: bool,
    /// Packages kept and packages cargo reported, when pruned.
    pub packages: Option<(usize, usize)>,
}

/// Answers a cell crate's `cargo metadata` call; `run` runs the real cargo and returns its exit
/// code and stdout.
pub fn answer(args: &[OsString], manifest_dir: &Path, run: &dyn Fn() -> (i32, Vec<u8>)) -> Answered {
    let prune = std::env::var("TORCHBOOK_RA_FULL_GRAPH").map_or(true, |v| v != "1");
    // The lean view (types from rustc, no completion asked for yet): the cell crate alone.
    let lean = std::env::var(super::rust_src::VIEW_ENV).is_ok_and(|v| v == "lean");
    let depth = if lean { 0 } else { DEPTH };
    let prune = prune || lean;
    let key = cache_key(args, manifest_dir, prune, depth);
    let cached = key.as_ref().map(|k| manifest_dir.join(CACHE_DIR).join(k));
    if let Some(text) = cached.as_ref().and_then(|path| std::fs::read(path).ok()) {
        print(&text);
        return Answered { code: 0, from_cache: true, packages: None };
    }
    let (code, stdout) = run();
    let passed_on = |code| {
        print(&stdout);
        Answered { code, from_cache: false, packages: None }
    };
    if code != 0 {
        return passed_on(code);
    }
    let text = String::from_utf8_lossy(&stdout);
    let Some(line) = text.lines().find(|l| l.starts_with('{')) else {
        return passed_on(code);
    };
    let mut packages = None;
    let answer = match serde_json::from_str::<Value>(line) {
        Ok(mut metadata) if prune => {
            let count = |m: &Value| m["packages"].as_array().map_or(0, Vec::len);
            let before = count(&metadata);
            prune_to_depth(&mut metadata, depth);
            packages = Some((count(&metadata), before));
            serde_json::to_vec(&metadata).unwrap_or_else(|_| line.as_bytes().to_vec())
        }
        _ => line.as_bytes().to_vec(),
    };
    if let Some(path) = &cached {
        let _ = std::fs::create_dir_all(manifest_dir.join(CACHE_DIR));
        let _ = std::fs::write(path, &answer);
    }
    print(&answer);
    Answered { code: 0, from_cache: false, packages }
}

fn print(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    if !bytes.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// Arguments, manifest, lock file and the pruning switch; `None` when the manifest cannot be
/// read (no caching then).
fn cache_key(args: &[OsString], manifest_dir: &Path, prune: bool, depth: usize) -> Option<String> {
    let mut hash = Sha256::new();
    for arg in args {
        hash.update(arg.as_encoded_bytes());
        hash.update(b"\0");
    }
    hash.update(std::fs::read(manifest_dir.join("Cargo.toml")).ok()?);
    hash.update(std::fs::read(manifest_dir.join("Cargo.lock")).unwrap_or_default());
    // rust-analyzer copies the lock file and points cargo at the copy.
    if let Some(lock) = std::env::var_os("CARGO_RESOLVER_LOCKFILE_PATH") {
        hash.update(std::fs::read(lock).unwrap_or_default());
    }
    hash.update([prune as u8, depth as u8]);
    Some(hex::encode(&hash.finalize()[..12]))
}

/// Keeps the workspace members and the packages within `depth` normal-dependency edges of
/// them, in `packages` and in the resolve graph (whose edges to dropped packages go too, as
/// rust-analyzer looks every edge up).
pub fn prune_to_depth(metadata: &mut Value, depth: usize) {
    let Some(nodes) = metadata.pointer("/resolve/nodes").and_then(Value::as_array) else {
        return;
    };
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in nodes {
        let Some(id) = node["id"].as_str() else { continue };
        let deps = node["deps"].as_array().map(Vec::as_slice).unwrap_or_default();
        let normal = deps.iter().filter(|dep| {
            let kinds = dep["dep_kinds"].as_array().map(Vec::as_slice).unwrap_or_default();
            kinds.is_empty() || kinds.iter().any(|k| k["kind"].is_null())
        });
        edges.insert(id, normal.filter_map(|dep| dep["pkg"].as_str()).collect());
    }
    let members: Vec<&str> = metadata["workspace_members"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut kept: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<(&str, usize)> = members.iter().map(|m| (*m, 0)).collect();
    while let Some((id, distance)) = queue.pop_front() {
        if !kept.insert(id.to_owned()) || distance == depth {
            continue;
        }
        for next in edges.get(id).into_iter().flatten() {
            queue.push_back((next, distance + 1));
        }
    }
    if let Some(packages) = metadata["packages"].as_array_mut() {
        packages.retain(|p| p["id"].as_str().is_some_and(|id| kept.contains(id)));
    }
    if let Some(nodes) = metadata.pointer_mut("/resolve/nodes").and_then(Value::as_array_mut) {
        nodes.retain(|n| n["id"].as_str().is_some_and(|id| kept.contains(id)));
        for node in nodes.iter_mut() {
            if let Some(deps) = node["deps"].as_array_mut() {
                deps.retain(|d| d["pkg"].as_str().is_some_and(|id| kept.contains(id)));
            }
            if let Some(dependencies) = node["dependencies"].as_array_mut() {
                dependencies.retain(|d| d.as_str().is_some_and(|id| kept.contains(id)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, deps: &[(&str, Option<&str>)]) -> Value {
        let deps: Vec<Value> = deps
            .iter()
            .map(|(pkg, kind)| json!({"pkg": pkg, "name": pkg, "dep_kinds": [{"kind": kind, "target": null}]}))
            .collect();
        let ids: Vec<&str> = deps.iter().map(|d| d["pkg"].as_str().unwrap()).collect();
        json!({"id": id, "deps": deps, "dependencies": ids, "features": []})
    }

    #[test]
    fn packages_beyond_the_depth_and_build_only_edges_are_dropped() {
        let mut metadata = json!({
            "workspace_members": ["ctx"],
            "packages": [{"id": "ctx"}, {"id": "torchbook"}, {"id": "tch"}, {"id": "torch_sys"}, {"id": "cc"}, {"id": "libc"}],
            "resolve": {"nodes": [
                node("ctx", &[("torchbook", None)]),
                node("torchbook", &[("tch", None), ("cc", Some("build"))]),
                node("tch", &[("torch_sys", None), ("libc", None)]),
                node("torch_sys", &[("libc", None)]),
                node("cc", &[]),
                node("libc", &[]),
            ]},
        });
        prune_to_depth(&mut metadata, 2);
        let ids: Vec<&str> = metadata["packages"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["ctx", "torchbook", "tch"]);
        let tch = &metadata["resolve"]["nodes"].as_array().unwrap()[2];
        assert_eq!(tch["id"], "tch");
        assert!(tch["deps"].as_array().unwrap().is_empty(), "edges to dropped packages go: {tch}");
        assert!(tch["dependencies"].as_array().unwrap().is_empty());
        let torchbook = &metadata["resolve"]["nodes"].as_array().unwrap()[1];
        assert_eq!(torchbook["deps"].as_array().unwrap().len(), 1, "the build-only edge goes");
    }

    #[test]
    fn only_the_cell_crates_own_metadata_is_answered() {
        let dir = std::env::temp_dir().join(format!("torchbook-metadata-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), format!("[package]\nname = \"{DEPENDENCY_CHECK_PACKAGE}\"\n")).unwrap();
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(dependency_check_call(&args(&["metadata", "--format-version=1"]), &dir));
        let runs = std::cell::Cell::new(0);
        let run = || {
            runs.set(runs.get() + 1);
            (0, b"{\"packages\":[]}".to_vec(), Vec::new())
        };
        assert_eq!(answer_dependency_check(&args(&["metadata", "--format-version=1"]), &dir, &run), (0, false));
        assert_eq!(answer_dependency_check(&args(&["metadata", "--format-version=1"]), &dir, &run), (0, true));
        assert_eq!(runs.get(), 1, "the second check came from the cache");
        std::fs::write(dir.join("Cargo.toml"), format!("[package]\nname = \"{DEPENDENCY_CHECK_PACKAGE}\"\n[dependencies]\nrand = \"0.8\"\n")).unwrap();
        assert_eq!(answer_dependency_check(&args(&["metadata", "--format-version=1"]), &dir, &run), (0, false), "another dependency is checked");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "").unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"ctx\"\n").unwrap();
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let manifest = dir.join("Cargo.toml");
        let call = cell_metadata_call(&args(&["metadata", "--format-version", "1", "--manifest-path", manifest.to_str().unwrap()]), Path::new("/"));
        assert_eq!(call.as_deref(), Some(dir.as_path()));
        assert!(cell_metadata_call(&args(&["metadata", "--manifest-path", "/rust/library/Cargo.toml"]), &dir).is_none());
        assert!(cell_metadata_call(&args(&["build", "--message-format=json"]), &dir).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
