//! `usage_request` (control channel): the figures JupyterLab's resource indicator
//! (jupyter-resource-usage) shows, measured as ipykernel 7 measures them with psutil, from
//! `/proc`. The kernel's processes are the kernel, its engine and everything below them (the
//! worker, cargo and rustc while a cell builds). A spare engine that this kernel took over is
//! not its child, so the engine's own tree is added by pid.

use crate::protocol::messages::UsageReply;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What the previous request saw, for CPU percentages over the time between two requests (as
/// psutil's `cpu_percent(interval=None)`: a process first seen counts 0).
#[derive(Default)]
pub struct UsageSampler {
    /// pid → (start time in clock ticks since boot, CPU ticks used) at the previous request.
    processes: HashMap<u32, (u64, u64)>,
    at: Option<Instant>,
    /// The host's (busy, total) jiffies at the previous request.
    host: Option<(u64, u64)>,
}

impl UsageSampler {
    /// Measures the kernel (this process) and the engine process tree.
    pub fn sample(&mut self, engine_pid: Option<u32>) -> UsageReply {
        let now = Instant::now();
        let children = children_by_parent();
        let mut pids = vec![std::process::id()];
        pids.extend(engine_pid);
        let pids = with_descendants(&pids, &children);
        let elapsed = self.at.map(|at| now.duration_since(at).as_secs_f64()).filter(|s| *s > 0.0);
        let ticks_per_second = clock_ticks_per_second();
        let mut kernel_cpu = 0.0;
        let mut kernel_memory = 0;
        let mut seen = HashMap::new();
        for pid in pids {
            let Some((started, used)) = cpu_ticks(pid) else { continue };
            if let (Some(seconds), Some((before_started, before_used))) = (elapsed, self.processes.get(&pid)) {
                // The same pid with another start time is another process: it counts from now.
                if *before_started == started {
                    kernel_cpu += used.saturating_sub(*before_used) as f64 / ticks_per_second / seconds * 100.0;
                }
            }
            seen.insert(pid, (started, used));
            kernel_memory += memory_bytes(pid);
        }
        self.processes = seen;
        self.at = Some(now);
        let host = host_cpu_jiffies();
        let host_cpu_percent = match (self.host, host) {
            (Some((busy_before, total_before)), Some((busy, total))) if total > total_before => {
                Some(round1((busy.saturating_sub(busy_before)) as f64 / (total - total_before) as f64 * 100.0))
            }
            _ => None,
        };
        self.host = host;
        UsageReply {
            hostname: hostname(),
            pid: std::process::id(),
            kernel_cpu: round1(kernel_cpu),
            kernel_memory,
            host_cpu_percent,
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get()),
            host_virtual_memory: virtual_memory(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// ppid → children, for every process in /proc.
fn children_by_parent() -> HashMap<u32, Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return children };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if let Some(fields) = stat_fields(pid) {
            if let Some(ppid) = fields.get(1).and_then(|f| f.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    children
}

fn with_descendants(roots: &[u32], children: &HashMap<u32, Vec<u32>>) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            found.push(pid);
            stack.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    found
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses):
/// index 0 is the state, 1 the parent pid, 11 utime, 12 stime, 19 the start time.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// (start time, user + system CPU ticks) of a process.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let fields = stat_fields(pid)?;
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((number(19)?, number(11)? + number(12)?))
}

/// Proportional set size in bytes (shared pages, such as libtorch's, split between the processes
/// that map them), as ipykernel reports with psutil's `memory_full_info().pss`; the resident set
/// where smaps_rollup cannot be read.
fn memory_bytes(pid: u32) -> u64 {
    let kib_field = |text: &str, name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name)).and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        if let Some(kib) = kib_field(&rollup, "Pss:") {
            return kib * 1024;
        }
    }
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|status| kib_field(&status, "VmRSS:")).map_or(0, |kib| kib * 1024)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// (busy, total) jiffies of all CPUs, from the first line of /proc/stat (idle and iowait are
/// not busy, as psutil counts them).
fn host_cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let values: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are inside user/nice.
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// psutil's `virtual_memory()` on Linux, from /proc/meminfo, in bytes.
fn virtual_memory(meminfo: &str) -> Map<String, Value> {
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    let total = field("MemTotal");
    let free = field("MemFree");
    let buffers = field("Buffers");
    let cached = field("Cached") + field("SReclaimable");
    let available = if meminfo.contains("MemAvailable:") { field("MemAvailable") } else { free + buffers + cached };
    let used = total.saturating_sub(free + buffers + cached);
    let percent = if total == 0 { 0.0 } else { round1(total.saturating_sub(available) as f64 / total as f64 * 100.0) };
    let mut memory = Map::new();
    for (name, value) in [("total", total), ("available", available)] {
        memory.insert(name.into(), value.into());
    }
    memory.insert("percent".into(), percent.into());
    for (name, value) in [
        ("used", used),
        ("free", free),
        ("active", field("Active")),
        ("inactive", field("Inactive")),
        ("buffers", buffers),
        ("cached", cached),
        ("shared", field("Shmem")),
        ("slab", field("Slab")),
    ] {
        memory.insert(name.into(), value.into());
    }
    memory
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(0);
    if ok { String::from_utf8_lossy(&buffer[..end]).into_owned() } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_memory_follows_psutil() {
        let meminfo = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 200 kB\n\
                       SReclaimable: 50 kB\nShmem: 10 kB\nActive: 300 kB\nInactive: 200 kB\nSlab: 70 kB\n";
        let memory = virtual_memory(meminfo);
        assert_eq!(memory["total"], 1_024_000);
        assert_eq!(memory["available"], 614_400);
        assert_eq!(memory["percent"], 40.0);
        assert_eq!(memory["cached"], 256_000);
        assert_eq!(memory["used"], (1000 - 100 - 50 - 250) * 1024);
        let names: Vec<&str> = memory.keys().map(String::as_str).collect();
        for name in ["total", "available", "percent", "used", "free", "active", "inactive", "buffers", "cached", "shared", "slab"] {
            assert!(names.contains(&name), "{name} missing");
        }
    }

    #[test]
    fn a_busy_child_counts_in_kernel_cpu_and_memory() {
        // A child that spins for a while: its CPU time shows on the second sample.
        let mut child = std::process::Command::new("sh").args(["-c", "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done"]).spawn().unwrap();
        let mut sampler = UsageSampler::default();
        let first = sampler.sample(None);
        assert_eq!(first.kernel_cpu, 0.0, "nothing to compare with yet");
        assert!(first.kernel_memory > 0 && first.host_cpu_percent.is_none());
        std::thread::sleep(std::time::Duration::from_millis(700));
        let second = sampler.sample(None);
        child.kill().ok();
        child.wait().ok();
        assert!(second.kernel_cpu > 5.0, "a spinning child: {}", second.kernel_cpu);
        assert!(second.host_cpu_percent.is_some());
        assert!(second.cpu_count >= 1 && !second.hostname.is_empty());
    }
}
