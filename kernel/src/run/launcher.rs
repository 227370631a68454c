//! `torchbook run --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]`:
//! torchrun's job without Python. Starts N copies of `torchbook run` on this node with the
//! variables torchrun sets (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`,
//! `GROUP_RANK`, `MASTER_ADDR`, `MASTER_PORT`), prefixes their output with `[rank k]`, and, as
//! torchrun does, stops the others as soon as one fails: they would otherwise wait in their next
//! collective until the timeout.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shape of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub nproc_per_node: usize,
    pub nnodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl Topology {
    /// Checks the flags; on one node an address and a free port are chosen when not given.
    pub fn new(
        nproc_per_node: usize,
        nnodes: usize,
        node_rank: usize,
        master_addr: Option<String>,
        master_port: Option<u16>,
    ) -> Result<Topology, String> {
        if nproc_per_node == 0 || nnodes == 0 {
            return Err(format!("--nproc-per-node {nproc_per_node} --nnodes {nnodes}: both must be at least 1"));
        }
        if node_rank >= nnodes {
            return Err(format!("--node-rank {node_rank} with --nnodes {nnodes}: expected 0 <= node rank < nnodes"));
        }
        let (master_addr, master_port) = match (master_addr, master_port) {
            (Some(addr), Some(port)) => (addr, port),
            _ if nnodes > 1 => {
                return Err(format!(
                    "--nnodes {nnodes} needs --master-addr and --master-port: the address of node 0, which every node can reach, and a free port there"
                ))
            }
            (addr, port) => {
                let port = match port {
                    Some(port) => port,
                    None => free_port().map_err(|e| format!("cannot find a free port for the store: {e}"))?,
                };
                (addr.unwrap_or_else(|| "127.0.0.1".into()), port)
            }
        };
        if master_port == 0 {
            return Err("--master-port 0: expected a port from 1 to 65535".into());
        }
        Ok(Topology { nproc_per_node, nnodes, node_rank, master_addr, master_port })
    }

    pub fn world_size(&self) -> usize {
        self.nproc_per_node * self.nnodes
    }

    /// The environment of local rank `local`, as torchrun sets it.
    pub fn env(&self, local: usize) -> Vec<(&'static str, String)> {
        vec![
            ("RANK", (self.node_rank * self.nproc_per_node + local).to_string()),
            ("LOCAL_RANK", local.to_string()),
            ("WORLD_SIZE", self.world_size().to_string()),
            ("LOCAL_WORLD_SIZE", self.nproc_per_node.to_string()),
            ("GROUP_RANK", self.node_rank.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
        ]
    }
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `program args` once per local rank and waits for all of them. Returns the ranks that
/// failed, with how they ended.
pub fn launch(program: &std::path::Path, args: &[std::ffi::OsString], topology: &Topology) -> Result<Vec<(usize, String)>, String> {
    let mut children: Vec<(usize, Child)> = Vec::new();
    let mut relays = Vec::new();
    for local in 0..topology.nproc_per_node {
        let env = topology.env(local);
        let rank: usize = env[0].1.parse().expect("a number");
        let mut command = Command::new(program);
        command.args(args).envs(env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own group, so stopping a rank stops its engine and worker too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| {
            stop_all(&mut children);
            format!("cannot start rank {rank} ({}): {e}", program.display())
        })?;
        for stream in [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as _)] {
            if let Some(stream) = stream {
                relays.push(std::thread::spawn(move || {
                    for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                        eprintln!("[rank {rank}] {line}");
                    }
                }));
            }
        }
        children.push((rank, child));
    }
    let mut failed = Vec::new();
    let mut running: Vec<(usize, Child)> = children;
    while !running.is_empty() {
        let mut still = Vec::new();
        for (rank, mut child) in running {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {}
                Ok(Some(status)) => failed.push((rank, describe(status))),
                Ok(None) => still.push((rank, child)),
                Err(e) => failed.push((rank, format!("cannot wait for it: {e}"))),
            }
        }
        running = still;
        if !failed.is_empty() && !running.is_empty() {
            for (rank, _) in &running {
                failed.push((*rank, "stopped because another rank failed".into()));
            }
            stop_all(&mut running);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for relay in relays {
        let _ = relay.join();
    }
    Ok(failed)
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// SIGTERM to each rank's process group, SIGKILL to what is left after 5 s.
fn stop_all(children: &mut Vec<(usize, Child)>) {
    for (_, child) in children.iter() {
        // SAFETY: signalling the process group we created for the child.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for (_, child) in children.iter_mut() {
        while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_get_torchruns_variables() {
        let t = Topology::new(2, 3, 1, Some("10.0.0.1".into()), Some(29500)).unwrap();
        assert_eq!(t.world_size(), 6);
        let env: std::collections::HashMap<_, _> = t.env(1).into_iter().collect();
        assert_eq!(env["RANK"], "3");
        assert_eq!(env["LOCAL_RANK"], "1");
        assert_eq!(env["WORLD_SIZE"], "6");
        assert_eq!(env["GROUP_RANK"], "1");
        assert_eq!(env["MASTER_ADDR"], "10.0.0.1");
    }

    #[test]
    fn bad_topologies_say_what_is_wrong() {
        assert!(Topology::new(0, 1, 0, None, None).unwrap_err().contains("at least 1"));
        assert!(Topology::new(2, 2, 2, None, None).unwrap_err().contains("node rank"));
        assert!(Topology::new(2, 2, 0, None, None).unwrap_err().contains("--master-addr"));
        let local = Topology::new(2, 1, 0, None, None).unwrap();
        assert_eq!(local.master_addr, "127.0.0.1");
        assert!(local.master_port > 0);
    }
}
