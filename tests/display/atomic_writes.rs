//! Writers killed with SIGKILL at random points, many times: the file is always one whole
//! version, never a mix or a truncation.
//!
//! The writer is this test binary started again with `TORCHBOOK_ATOMIC_WRITER` set (see
//! `writer_process`): it rewrites one file in a loop, each version 2 MB of one repeated byte.

use std::path::{Path, PathBuf};
use std::time::Duration;

const WRITER_ENV: &str = "TORCHBOOK_ATOMIC_WRITER";
const SIZE: usize = 2 << 20;

/// Not a test on its own: the loop the killed processes run.
#[test]
fn writer_process() {
    let Some(path) = std::env::var_os(WRITER_ENV) else { return };
    for version in 1u32.. {
        let byte = (version % 251) as u8;
        torchbook_display::atomic::write(&path, vec![byte; SIZE]).unwrap();
    }
}

fn whole_version(path: &Path) -> Result<u8, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != SIZE {
        return Err(format!("{} bytes instead of {SIZE}", bytes.len()));
    }
    let first = bytes[0];
    match bytes.iter().position(|&b| b != first) {
        Some(at) => Err(format!("byte {at} is from another version")),
        None => Ok(first),
    }
}

fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb-atomic-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_writer_killed_at_any_point_leaves_a_whole_file() {
    let dir = folder();
    let path = dir.join("weights.bin");
    torchbook_display::atomic::write(&path, vec![0u8; SIZE]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let kills = 60;
    for round in 0..kills {
        let mut writer = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "writer_process", "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the writer's start, its writes, fsyncs and renames.
        std::thread::sleep(Duration::from_millis(5 + (round * 37 % 120) as u64));
        writer.kill().unwrap(); // SIGKILL
        writer.wait().unwrap();
        match whole_version(&path) {
            Ok(version) => {
                seen.insert(version);
            }
            Err(why) => panic!("after kill {round}: {why}"),
        }
    }
    // The writers got far enough to replace the file, so the kills did land mid-work.
    assert!(seen.len() > 1, "no writer ever replaced the file: {seen:?}");
    let leftovers = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name() != "weights.bin").count();
    // A killed writer may leave its temporary file (never the target), at most one each.
    assert!(leftovers <= kills, "{leftovers} temporary files for {kills} kills");
    std::fs::remove_dir_all(dir).unwrap();
}
