//! Watching other processes without waiting on them forever: whether a process (not
//! necessarily our child) has ended, through a pidfd so that a reused pid cannot fool it, and
//! a guard that kills a child which has not exited a grace period after it was asked to.
//!
//! Every wait for a child in set-up and shutdown paths goes through [`KillAfter`]: a worker
//! that never reads its closed command pipe, or a compiler stuck on a lock, must cost a
//! message and a few seconds, never a hung `make demo` or a kernel that cannot shut down.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A process whose end we want to notice.
pub struct Watched {
    pid: u32,
    /// `None` where pidfds are not available (Linux before 5.3): `kill(pid, 0)` then.
    pidfd: Option<OwnedFd>,
    /// The process was already gone when the watch began.
    gone_at_start: bool,
}

impl Watched {
    pub fn new(pid: u32) -> Watched {
        match pidfd_open(pid) {
            Ok(fd) => Watched { pid, pidfd: Some(fd), gone_at_start: false },
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Watched { pid, pidfd: None, gone_at_start: true },
            Err(_) => Watched { pid, pidfd: None, gone_at_start: false },
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has ended (a zombie counts as ended).
    pub fn has_ended(&self) -> bool {
        if self.gone_at_start {
            return true;
        }
        match &self.pidfd {
            Some(fd) => {
                let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, no wait.
                unsafe { libc::poll(&mut poll, 1, 0) > 0 }
            }
            None => {
                // SAFETY: signal 0 only checks that the process exists.
                let missing = unsafe { libc::kill(self.pid as libc::pid_t, 0) } != 0;
                missing && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            }
        }
    }
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: the pidfd_open system call with no flags; a returned descriptor is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Kills a child with SIGKILL if it has not exited `grace` after this guard was made, and
/// says so on stderr. Drop the guard once the wait it covers has returned.
pub struct KillAfter {
    done: Arc<AtomicBool>,
}

impl KillAfter {
    /// `what` names the child in the message ("the cell worker").
    pub fn new(pid: u32, grace: Duration, what: &str) -> KillAfter {
        let done = Arc::new(AtomicBool::new(false));
        // Opened now, while the child cannot have been reaped: the signal then reaches this
        // process even if its pid is reused later.
        let pidfd = pidfd_open(pid).ok();
        let (flag, what) = (done.clone(), what.to_owned());
        let spawned = std::thread::Builder::new().name("kill-after".into()).spawn(move || {
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if flag.load(Ordering::SeqCst) {
                return;
            }
            eprintln!("torchbook: {what} (pid {pid}) did not exit within {grace:?}; killing it");
            match &pidfd {
                // SAFETY: pidfd_send_signal on a descriptor we own.
                Some(fd) => unsafe {
                    libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0);
                },
                // SAFETY: the child is unreaped until the wait this guard covers returns.
                None => unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                },
            }
        });
        if let Err(e) = spawned {
            eprintln!("torchbook: cannot bound the wait for process {pid} ({e})");
        }
        KillAfter { done }
    }
}

impl Drop for KillAfter {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// How long a child may take to exit once asked (`TORCHBOOK_EXIT_GRACE_MS`, default 5000).
pub fn exit_grace() -> Duration {
    let ms = std::env::var("TORCHBOOK_EXIT_GRACE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    Duration::from_millis(ms)
}

/// Drops an evcxr context without waiting forever: evcxr closes the worker's command pipe and
/// waits for it to exit; past [`exit_grace`] the worker is killed.
pub fn drop_context(context: evcxr::CommandContext) {
    let pid = context.process_handle().lock().map(|child| child.id()).ok();
    let _guard = pid.map(|pid| KillAfter::new(pid, exit_grace(), "the cell worker"));
    drop(context);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_ignores_its_end_is_killed_after_the_grace_period() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let watched = Watched::new(child.id());
        assert!(!watched.has_ended());
        let started = std::time::Instant::now();
        let guard = KillAfter::new(child.id(), Duration::from_millis(200), "a test sleeper");
        let status = child.wait().unwrap();
        drop(guard);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        assert!(watched.has_ended());
    }

    #[test]
    fn a_child_that_exits_in_time_is_left_alone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let guard = KillAfter::new(child.id(), Duration::from_secs(5), "true");
        assert!(child.wait().unwrap().success());
        drop(guard);
        assert!(Watched::new(999_999_999).has_ended(), "a pid that does not exist has ended");
    }
}
