//! `torchbook serve ARGS…` executes `torchbook-serve ARGS…` from the same folder (the kernel
//! binary itself never links libtorch), and says how to get it when it is missing.

use std::process::Command;

#[test]
fn serve_runs_the_sibling_binary_with_its_arguments() {
    let torchbook = std::path::PathBuf::from(env!("CARGO_BIN_EXE_torchbook"));
    let output = Command::new(&torchbook).args(["serve", "--version"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if torchbook.with_file_name("torchbook-serve").is_file() {
        assert!(output.status.success(), "{stderr}");
        assert!(stdout.starts_with("torchbook serve "), "{stdout}");
        let help = Command::new(&torchbook).args(["serve", "--help"]).output().unwrap();
        assert!(String::from_utf8_lossy(&help.stdout).contains("--max-batch"), "--help goes to torchbook-serve");
    } else {
        assert!(stderr.contains("expected the torchbook-serve binary next to torchbook"), "{stderr}");
    }

    // A torchbook alone in its folder.
    let dir = std::env::temp_dir().join(format!("tb-serve-subcommand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&torchbook, dir.join("torchbook")).unwrap();
    let output = Command::new(dir.join("torchbook")).args(["serve", "model.pt"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected the torchbook-serve binary next to torchbook, found no"), "{stderr}");
    assert!(stderr.contains("cargo build --release -p torchbook-serve"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
