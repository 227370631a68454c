//! Subcommands that are binaries of their own, as git's are: `torchbook serve ARGS…` executes
//! `torchbook-serve ARGS…` found next to this executable. The service links libtorch and the
//! kernel binary must not (its start time and memory are product features), so it is built
//! as a separate binary (`serve/`) rather than a module here.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The binary `name` in the folder of `current_exe`, if it is there.
pub fn sibling(current_exe: &Path, name: &str) -> Result<PathBuf, String> {
    let folder = current_exe.parent().ok_or_else(|| format!("{} has no folder", current_exe.display()))?;
    let path = folder.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "expected the {name} binary next to torchbook, found no {}: build it with `cargo build --release -p {name}` \
             (or `make build`) and keep it in the same folder as torchbook",
            path.display()
        ))
    }
}

/// Replaces this process with `name ARGS…` (stdin, stdout, stderr and signals go to it);
/// returns only when that is impossible.
pub fn exec_sibling(name: &str, args: &[OsString]) -> anyhow::Error {
    let current = match std::env::current_exe() {
        Ok(path) => path,
        Err(error) => return anyhow::anyhow!("cannot locate the torchbook binary: {error}"),
    };
    match sibling(&current, name) {
        Ok(path) => {
            let error = std::process::Command::new(&path).args(args).exec();
            anyhow::anyhow!("cannot run {}: {error}", path.display())
        }
        Err(message) => anyhow::anyhow!(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_sibling_is_an_error_that_says_how_to_get_it() {
        let dir = std::env::temp_dir().join(format!("tb-external-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = sibling(&dir.join("torchbook"), "torchbook-serve").unwrap_err();
        assert!(err.contains("expected the torchbook-serve binary next to torchbook"), "{err}");
        assert!(err.contains("cargo build --release -p torchbook-serve"), "{err}");
        std::fs::write(dir.join("torchbook-serve"), b"").unwrap();
        assert_eq!(sibling(&dir.join("torchbook"), "torchbook-serve").unwrap(), dir.join("torchbook-serve"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
