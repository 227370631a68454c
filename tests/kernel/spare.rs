//! Spare engines (kernel/src/wire/spare.rs and its kernel and engine sides): a kernel leaves a warm engine behind, the next kernel
//! with the same environment takes it over, in its own working directory and with its own
//! per-kernel variables, and nothing of either is left behind.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{result_text, stream_text, temp_dir, TestKernel};

/// The pid in the spare folder's `.ready` file, once a warm spare waits there.
fn ready_spare(dir: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "ready") {
                if let Ok(pid) = std::fs::read_to_string(entry.path()).unwrap_or_default().trim().parse() {
                    return pid;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no spare engine became ready in {}", dir.display());
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn gone_within(pid: u32, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The working folder of a spare engine: named by its pid, as a kernel's is (`WorkDir`).
fn engine_folder(pid: u32) -> PathBuf {
    let prefix = format!("torchbook-{pid}-");
    let folders: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert_eq!(folders.len(), 1, "one folder for engine {pid}: {folders:?}");
    folders[0].clone()
}

kernel_test!(the_next_kernel_takes_a_warm_spare_in_its_own_directory, async {
    let spares = temp_dir();
    let notebook_dir = temp_dir();
    let spares_path = spares.to_str().unwrap();
    let env = [
        ("TORCHBOOK_SPARE_ENGINE", "1"),
        ("TORCHBOOK_SPARE_DIR", spares_path),
        // Should this test die half-way, its spares end on their own.
        ("TORCHBOOK_SPARE_IDLE_S", "300"),
    ];
    let mut first = TestKernel::start_with_env(&env).await;
    let (reply, _) = first.execute("let t = Tensor::ones(&[2], FLOAT_CPU); t.sum(Kind::Float)").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let spare = ready_spare(&spares);
    let spare_folder = engine_folder(spare);
    drop(first);
    assert!(alive(spare), "the spare outlives the kernel that started it");

    let mut env_b = env.to_vec();
    env_b.push(("JPY_SESSION_NAME", "b.ipynb"));
    let mut second = TestKernel::start_in_dir_with_env(&notebook_dir, &env_b).await;
    let (reply, iopub) = second
        .execute("let t = Tensor::ones(&[2, 3], FLOAT_CPU);\nprintln!(\"{} {:?}\", std::env::current_dir().unwrap().display(), std::env::var(\"JPY_SESSION_NAME\"));\nt.sum(Kind::Float)")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(result_text(&iopub).contains('6'), "{}", result_text(&iopub));
    assert_eq!(
        stream_text(&iopub, "stdout").trim(),
        format!("{} Ok(\"b.ipynb\")", notebook_dir.canonicalize().unwrap().display()),
        "the worker runs in this kernel's directory, with its variables"
    );
    assert!(stream_text(&iopub, "stderr").is_empty(), "nothing from the warm-up shows: {}", stream_text(&iopub, "stderr"));
    // The kernel talks to the spare: no engine of its own among its children.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", second.process.id())).unwrap_or_default();
    assert!(children.split_whitespace().all(|c| c != spare.to_string()), "the spare is not the kernel's child");
    assert!(
        !children.split_whitespace().any(|c| std::fs::read_to_string(format!("/proc/{c}/cmdline")).unwrap_or_default().contains("\0engine")),
        "the kernel started no engine of its own: {children}"
    );
    let (reply, iopub) = second.execute("t.size()").await;
    assert_eq!(reply["status"], "ok", "variables persist in the taken engine: {reply}");
    assert_eq!(result_text(&iopub), "[2, 3]");

    // Its first cell done, the kernel starts the next spare.
    let next = ready_spare(&spares);
    assert_ne!(next, spare);
    drop(second);
    assert!(gone_within(spare, Duration::from_secs(10)), "the taken engine ends with its kernel");
    assert!(!spare_folder.exists(), "its folder is removed: {}", spare_folder.display());

    // An unclaimed spare ends on SIGTERM (or after its idle time) and removes its files.
    let next_folder = engine_folder(next);
    std::process::Command::new("kill").args(["-TERM", &next.to_string()]).status().unwrap();
    assert!(gone_within(next, Duration::from_secs(10)), "the unclaimed spare ends on SIGTERM");
    assert!(!next_folder.exists(), "its folder is removed: {}", next_folder.display());
    let left: Vec<_> = std::fs::read_dir(&spares).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().ends_with(".sock") && !n.to_string_lossy().ends_with(".ready")), "{left:?}");
    let _ = std::fs::remove_dir_all(&spares);
    let _ = std::fs::remove_dir_all(&notebook_dir);
});

/// Plain-Rust kernels (fast to start) using spares in `spares`; spares left by a test that died
/// end on their own.
fn plain_env(spares: &Path) -> Vec<(&'static str, String)> {
    let dir = spares.to_str().unwrap().to_owned();
    vec![("TORCHBOOK_PRELUDE", "0".into()), ("TORCHBOOK_SPARE_ENGINE", "1".into()), ("TORCHBOOK_SPARE_DIR", dir), ("TORCHBOOK_SPARE_IDLE_S", "120".into())]
}

/// Starts a kernel with `env`, runs `cell`, and waits for the spare it then starts.
async fn kernel_and_its_spare(env: &[(&'static str, String)], spares: &Path, cell: &str) -> (TestKernel, u32) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut kernel = TestKernel::start_with_env(&env).await;
    let (reply, _) = kernel.execute(cell).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let spare = ready_spare(spares);
    (kernel, spare)
}

kernel_test!(a_kernel_with_another_environment_does_not_take_the_spare, async {
    let spares = temp_dir();
    let env = plain_env(&spares);
    let (first, spare) = kernel_and_its_spare(&env, &spares, "1 + 1").await;
    drop(first);
    // A variable that is not per-kernel changes the key: this kernel starts its own engine.
    let mut other_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    other_env.push(("OMP_NUM_THREADS", "1"));
    let mut other = TestKernel::start_with_env(&other_env).await;
    let (reply, iopub) = other.execute("std::env::var(\"OMP_NUM_THREADS\").unwrap()").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub), "\"1\"");
    assert!(alive(spare), "the first spare still waits");
    // This kernel starts a spare for its own key, which takes the first one's place: a user
    // has one spare at most, whatever the environments.
    let spare_folder = engine_folder(spare);
    assert!(gone_within(spare, Duration::from_secs(120)), "the older spare makes room for the newer");
    assert!(!spare_folder.exists(), "its folder is removed: {}", spare_folder.display());
    let newer = ready_spare(&spares);
    assert_ne!(newer, spare);
    drop(other);
    let ready: Vec<PathBuf> =
        std::fs::read_dir(&spares).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "ready")).collect();
    assert_eq!(ready.len(), 1, "one spare in all: {ready:?}");
    std::process::Command::new("kill").args(["-TERM", &newer.to_string()]).status().unwrap();
    assert!(gone_within(newer, Duration::from_secs(10)));
    let _ = std::fs::remove_dir_all(&spares);
});

/// The processes whose environment holds `TORCHBOOK_TEST_TAG=tag`: a kernel, its engine,
/// workers and spares all inherit it.
fn tagged_processes(tag: &str) -> Vec<u32> {
    let needle = format!("TORCHBOOK_TEST_TAG={tag}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|&b| b == 0).any(|v| v == needle.as_bytes())
        })
        .collect()
}

fn all_gone_within(tag: &str, wait: Duration) -> Vec<u32> {
    let deadline = Instant::now() + wait;
    loop {
        let left = tagged_processes(tag);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

kernel_test!(nothing_is_left_behind_when_the_frontend_exits, async {
    // As Zeppelin stops an interpreter (shutdown_request, then its bridge process ends), and
    // as a frontend that is killed outright leaves its kernel.
    for shut_down_first in [true, false] {
        let spares = temp_dir();
        let tag = uuid::Uuid::new_v4().to_string();
        let mut env = plain_env(&spares);
        env.push(("TORCHBOOK_TEST_TAG", tag.clone()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut k = TestKernel::start_through_frontend(&env).await;
        let (reply, _) = k.execute("1 + 1").await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let spare = ready_spare(&spares);
        let before = tagged_processes(&tag);
        assert!(before.len() >= 4, "kernel, engine, worker and spare: {before:?}");
        if shut_down_first {
            k.send_control("shutdown_request", serde_json::json!({"restart": false})).await;
            k.control_reply().await;
            std::thread::sleep(Duration::from_secs(1));
            assert!(alive(spare), "the spare waits for the frontend's next kernel");
        }
        let frontend = k.process.id();
        std::process::Command::new("kill").args(["-KILL", &frontend.to_string()]).status().unwrap();
        let left = all_gone_within(&tag, Duration::from_secs(30));
        assert!(left.is_empty(), "processes left after the frontend exited (shutdown first: {shut_down_first}): {left:?}");
        drop(k);
        let _ = std::fs::remove_dir_all(&spares);
    }
});

kernel_test!(an_engine_that_died_is_replaced_by_the_waiting_spare, async {
    let spares = temp_dir();
    let (mut k, spare) = kernel_and_its_spare(&plain_env(&spares), &spares, "let kept = 5;").await;
    let engine = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", k.process.id()))
        .unwrap_or_default()
        .split_whitespace()
        .map(|c| c.parse::<u32>().unwrap())
        .find(|c| std::fs::read_to_string(format!("/proc/{c}/cmdline")).unwrap_or_default().contains("\0engine"))
        .expect("the kernel's own engine");
    std::process::Command::new("kill").args(["-KILL", &engine.to_string()]).status().unwrap();
    assert!(gone_within(engine, Duration::from_secs(10)));
    // A cell sent before the kernel noticed the death is reported as `EngineDied`; the next
    // one gets the replacement.
    let (mut reply, mut iopub) = k.execute("std::process::id()").await;
    if reply["ename"] == "EngineDied" {
        (reply, iopub) = k.execute("std::process::id()").await;
    }
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result_text(&iopub).parse::<u32>().ok().map(|worker| parent_of(worker)), Some(spare), "the cell ran in the spare's worker");
    let (reply, _) = k.execute("kept").await;
    assert_eq!(reply["ename"], "CompileError", "a fresh engine has no old variables: {reply}");
    // The spare is used up; the kernel starts the next once the taken one is warm.
    let next = ready_spare(&spares);
    assert_ne!(next, spare);
    drop(k);
    assert!(gone_within(spare, Duration::from_secs(10)), "the taken spare ends with the kernel");
    std::process::Command::new("kill").args(["-TERM", &next.to_string()]).status().unwrap();
    assert!(gone_within(next, Duration::from_secs(10)));
    let _ = std::fs::remove_dir_all(&spares);
});

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) in parentheses: state, ppid.
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}
