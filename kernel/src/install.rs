//! `torchbook install`: writes the kernelspec (kernel.json and logos) where Jupyter looks for it.
//! Re-running replaces the previous spec of the same name. `--enterprise-gateway` writes the
//! variant Jupyter Enterprise Gateway starts through `torchbook launch` (docs/DEPLOYMENT.md).
//! `--shared DIR` first lays out an install every user can run (`shared`).

pub mod shared;

use serde_json::json;
use std::path::{Path, PathBuf};

/// Where to install, as `jupyter kernelspec install` spells the choices.
#[derive(Debug, Clone)]
pub enum InstallLocation {
    User,
    SysPrefix,
    Prefix(PathBuf),
}

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub location: InstallLocation,
    pub name: String,
    pub display_name: String,
    /// libtorch's folder; its `lib` is put on the kernel's library path.
    pub libtorch: Option<PathBuf>,
    /// A kernelspec for Jupyter Enterprise Gateway rather than a local frontend.
    pub enterprise_gateway: bool,
    /// The shared install this kernelspec runs (`--shared`): its binary, libtorch, toolchain,
    /// registry and read-only prelude cache; `libtorch` is then its libtorch.
    pub shared: Option<shared::SharedLayout>,
}

/// The process proxy Enterprise Gateway starts the kernel with: on the hosts of
/// `EnterpriseGatewayApp.remote_hosts` (over ssh, or directly when the host is this one).
pub const EG_PROCESS_PROXY: &str = "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy";

/// Where the toolchain that builds cells (`cargo`, `rustc`) was found at install time, then the
/// system's folders: Enterprise Gateway gives kernels a bare environment (only `KERNEL_*`,
/// `EG_INHERITED_ENVS` and the kernelspec's `env`), without the installing user's `PATH`.
fn kernel_path(toolchain: Option<&Path>) -> String {
    let mut dirs: Vec<String> = toolchain.map(|t| t.join("bin").display().to_string()).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        for tool in ["cargo", "rustc"] {
            if let Some(dir) = std::env::split_paths(&path).find(|d| d.join(tool).is_file()).filter(|_| toolchain.is_none()) {
                let dir = dir.display().to_string();
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    dirs.extend(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(String::from));
    dirs.join(":")
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("--sys-prefix needs an active virtual environment (VIRTUAL_ENV) or a python3 on PATH: {0}")]
    NoSysPrefix(String),
    #[error("no home directory (HOME is unset); use --prefix")]
    NoHome,
    #[error("cannot write the kernelspec to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel name {0:?} may contain only letters, digits, '.', '_' and '-'")]
    BadName(String),
}

const LOGO_32: &[u8] = include_bytes!("../../kernelspec/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../../kernelspec/logo-64x64.png");
const LOGO_SVG: &[u8] = include_bytes!("../../kernelspec/logo-svg.svg");

fn kernels_dir(location: &InstallLocation) -> Result<PathBuf, InstallError> {
    Ok(match location {
        InstallLocation::User => {
            if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR") {
                PathBuf::from(dir).join("kernels")
            } else {
                let home = std::env::var_os("HOME").ok_or(InstallError::NoHome)?;
                PathBuf::from(home).join(".local/share/jupyter/kernels")
            }
        }
        InstallLocation::SysPrefix => sys_prefix()?.join("share/jupyter/kernels"),
        InstallLocation::Prefix(prefix) => prefix.join("share/jupyter/kernels"),
    })
}

fn sys_prefix() -> Result<PathBuf, InstallError> {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        return Ok(PathBuf::from(venv));
    }
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|e| InstallError::NoSysPrefix(e.to_string()))?;
    let prefix = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || prefix.is_empty() {
        return Err(InstallError::NoSysPrefix(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(PathBuf::from(prefix))
}

/// The kernel.json for a kernel started as `binary`.
pub fn kernel_json(options: &InstallOptions, binary: &Path) -> serde_json::Value {
    let mut env = serde_json::Map::new();
    if let Some(libtorch) = &options.libtorch {
        let lib = libtorch.join("lib");
        env.insert("LD_LIBRARY_PATH".into(), json!(lib.display().to_string()));
        env.insert("LIBTORCH".into(), json!(libtorch.display().to_string()));
        let runtime = crate::prelude::default_runtime();
        let runtime = runtime.canonicalize().unwrap_or(runtime);
        env.insert("TORCHBOOK_RUNTIME".into(), json!(runtime.display().to_string()));
    }
    if let Some(layout) = &options.shared {
        for (name, value) in shared::kernel_env(layout) {
            env.insert(name, json!(value));
        }
    }
    // Where `make data` put the example data sets, so notebooks opened in JupyterLab find them.
    // A shared install's users get it only when they can read it.
    let data = std::env::var_os("TORCHBOOK_DATA")
        .filter(|data| options.shared.is_none() || shared::readable_by_all(Path::new(data)));
    if let Some(data) = data {
        env.insert("TORCHBOOK_DATA".into(), json!(PathBuf::from(data).display().to_string()));
    }
    let binary_path = binary.display().to_string();
    let torchbook = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "binary": binary_path,
        "libtorch": options.libtorch.as_ref().map(|p| p.display().to_string()),
        "shared": options.shared.as_ref().map(|l| l.root.display().to_string()),
    });
    if options.enterprise_gateway {
        env.insert("PATH".into(), json!(kernel_path(options.shared.as_ref().map(|l| l.toolchain.as_path()))));
        // A shared install's kernels keep their own cache (their home's) besides the shared one.
        if let Some(cache) = std::env::var_os("TORCHBOOK_CACHE").filter(|_| options.shared.is_none()) {
            env.insert("TORCHBOOK_CACHE".into(), json!(PathBuf::from(cache).display().to_string()));
        }
        // EG fills these placeholders in (RemoteKernelManager.format_kernel_cmd).
        return json!({
            "argv": [binary_path, "launch", "--kernel-id", "{kernel_id}", "--response-address", "{response_address}",
                     "--public-key", "{public_key}", "--port-range", "{port_range}"],
            "display_name": options.display_name,
            "language": "rust",
            // EG then interrupts through the launcher's communication port ({"signum": 2}),
            // which interrupts exactly as interrupt_request does; it works wherever EG can
            // reach that port, even when it cannot signal the process (another host or user).
            "interrupt_mode": "signal",
            "env": env,
            "metadata": {
                "debugger": false,
                "process_proxy": { "class_name": EG_PROCESS_PROXY },
                "torchbook": torchbook,
            }
        });
    }
    json!({
        "argv": [binary_path, "kernel", "--connection-file", "{connection_file}"],
        "display_name": options.display_name,
        "language": "rust",
        // Interrupts arrive as interrupt_request on control: SIGINT would also hit the worker.
        "interrupt_mode": "message",
        "env": env,
        "metadata": {
            "debugger": false,
            "torchbook": torchbook,
        }
    })
}

/// Writes `bytes` to `path` and flushes them to disk (the folder is put in place afterwards).
fn write(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let written = std::fs::File::create(path).and_then(|mut file| {
        use std::io::Write;
        file.write_all(bytes)?;
        file.sync_all()
    });
    written.map_err(|source| InstallError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Swaps two existing paths in one step (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as `rename` would.
    let done = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Installs the kernelspec and returns the folder it was written to.
pub fn install(options: &InstallOptions, binary: &Path) -> Result<PathBuf, InstallError> {
    let name_ok = !options.name.is_empty()
        && options
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(InstallError::BadName(options.name.clone()));
    }
    let kernels = kernels_dir(&options.location)?;
    let dir = kernels.join(&options.name);
    let io = |source| InstallError::Write {
        path: dir.clone(),
        source,
    };
    // The new kernelspec is written beside the old one and swapped in whole: a frontend
    // listing kernels, or an install killed half-way, sees the old spec or the new one,
    // never a folder without its kernel.json. The staging name starts with a dot, which
    // jupyter_client does not list as a kernel.
    let staging = kernels.join(format!(".{}.installing-{}", options.name, std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io)?;
    }
    std::fs::create_dir_all(&staging).map_err(io)?;
    let spec = serde_json::to_vec_pretty(&kernel_json(options, binary)).expect("JSON serialises");
    write(&staging.join("kernel.json"), &spec)?;
    write(&staging.join("logo-32x32.png"), LOGO_32)?;
    write(&staging.join("logo-64x64.png"), LOGO_64)?;
    write(&staging.join("logo-svg.svg"), LOGO_SVG)?;
    if dir.exists() {
        exchange(&staging, &dir).map_err(io)?;
        // `staging` now holds the previous kernelspec.
        std::fs::remove_dir_all(&staging).map_err(io)?;
    } else {
        std::fs::rename(&staging, &dir).map_err(io)?;
    }
    if let Ok(folder) = std::fs::File::open(&kernels) {
        let _ = folder.sync_all();
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(prefix: &Path) -> InstallOptions {
        InstallOptions {
            location: InstallLocation::Prefix(prefix.to_owned()),
            name: "torchbook".into(),
            display_name: "Rust (torchbook)".into(),
            libtorch: Some(PathBuf::from("/opt/libtorch")),
            enterprise_gateway: false,
            shared: None,
        }
    }

    #[test]
    fn installs_and_replaces() {
        let prefix = std::env::temp_dir().join(format!("tb-install-{}", uuid::Uuid::new_v4()));
        let dir = install(&options(&prefix), Path::new("/bin/torchbook")).unwrap();
        std::fs::write(dir.join("stale.txt"), "old").unwrap();
        let again = install(&options(&prefix), Path::new("/bin/torchbook")).unwrap();
        assert_eq!(dir, again);
        assert!(!dir.join("stale.txt").exists());
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["argv"][0], "/bin/torchbook");
        assert_eq!(spec["env"]["LD_LIBRARY_PATH"], "/opt/libtorch/lib");
        assert!(dir.join("logo-64x64.png").exists());
        // Nothing but the kernelspec is left in the kernels folder (no staging copy).
        let left: Vec<_> = std::fs::read_dir(dir.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("torchbook")]);
        std::fs::remove_dir_all(prefix).unwrap();
    }

    #[test]
    fn enterprise_gateway_spec() {
        let mut o = options(Path::new("/tmp"));
        o.enterprise_gateway = true;
        let spec = kernel_json(&o, Path::new("/bin/torchbook"));
        let argv: Vec<&str> = spec["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(argv, ["/bin/torchbook", "launch", "--kernel-id", "{kernel_id}", "--response-address", "{response_address}",
            "--public-key", "{public_key}", "--port-range", "{port_range}"]);
        assert_eq!(spec["metadata"]["process_proxy"]["class_name"], EG_PROCESS_PROXY);
        assert_eq!(spec["interrupt_mode"], "signal");
        // The local spec's environment, and a PATH, since EG passes kernels a bare one.
        assert_eq!(spec["env"]["LD_LIBRARY_PATH"], "/opt/libtorch/lib");
        assert!(spec["env"]["PATH"].as_str().unwrap().ends_with("/usr/bin:/sbin:/bin"));
        let local = kernel_json(&options(Path::new("/tmp")), Path::new("/bin/torchbook"));
        assert!(local["metadata"].get("process_proxy").is_none());
        assert!(local["env"].get("PATH").is_none());
    }

    #[test]
    fn shared_spec_points_at_the_shared_install() {
        let root = PathBuf::from("/opt/torchbook");
        let layout = shared::SharedLayout {
            binary: root.join("bin/torchbook"),
            runtime: root.join("src/runtime"),
            libtorch: root.join("libtorch/torch"),
            toolchain: root.join("toolchain"),
            cargo_home: root.join("cargo"),
            cache: root.join("cache"),
            root,
        };
        let mut o = options(Path::new("/tmp"));
        o.libtorch = Some(layout.libtorch.clone());
        o.shared = Some(layout);
        let spec = kernel_json(&o, Path::new("/opt/torchbook/bin/torchbook"));
        assert_eq!(spec["argv"][0], "/opt/torchbook/bin/torchbook");
        let env = &spec["env"];
        assert_eq!(env["LD_LIBRARY_PATH"], "/opt/torchbook/libtorch/torch/lib");
        assert_eq!(env["TORCHBOOK_RUNTIME"], "/opt/torchbook/src/runtime");
        assert_eq!(env["TORCHBOOK_SHARED_CACHE"], "/opt/torchbook/cache");
        assert_eq!(env["TORCHBOOK_TOOLCHAIN"], "/opt/torchbook/toolchain");
        assert_eq!(env["CARGO_HOME"], "/opt/torchbook/cargo");
        assert_eq!(env["CARGO_NET_OFFLINE"], "true");
        assert!(env.get("TORCHBOOK_CACHE").is_none(), "each user's own cache stays theirs");
        assert_eq!(spec["metadata"]["torchbook"]["shared"], "/opt/torchbook");
        o.enterprise_gateway = true;
        let eg = kernel_json(&o, Path::new("/opt/torchbook/bin/torchbook"));
        assert!(eg["env"]["PATH"].as_str().unwrap().starts_with("/opt/torchbook/toolchain/bin:"));
        assert!(eg["env"].get("TORCHBOOK_CACHE").is_none());
    }

    #[test]
    fn bad_name_is_refused() {
        let mut o = options(Path::new("/tmp"));
        o.name = "../evil".into();
        assert!(matches!(install(&o, Path::new("/x")), Err(InstallError::BadName(_))));
    }
}
