//! Runs inside the cell worker (this binary, started by evcxr with `EVCXR_IS_RUNTIME`): sits
//! between the worker's stdout/stderr and the pipes evcxr reads, because evcxr only passes on
//! whole lines and keeps rich output until the cell ends. The relay
//!
//! - turns text that has waited [`PARTIAL_AFTER`] without a newline (`print!`, `\r` progress
//!   lines) into a `stream` side-channel record, so that it reaches the frontend at once;
//! - turns evcxr's display convention (`EVCXR_BEGIN_CONTENT mime` … `EVCXR_END_CONTENT`, what
//!   `evcxr_display` methods print) into `display` records, shown in place, except a group of
//!   text/plain only, which is how evcxr reports the cell's value and is passed through;
//! - before passing on evcxr's end-of-cell line, asks the cell side to flush Rust's stdout
//!   buffer and waits for the answer, so that a cell's last `print!` stays with that cell.
//!
//! The cell side of the flush handshake is in `worker_setup.rs`: it announces itself with a
//! `flusher_ready` record, flushes stdout every [`PARTIAL_AFTER`], and answers every byte
//! written to the pipe named by `TORCHBOOK_FLUSH_FD` with a `flushed` record.

use crate::side_channel::RECORD_PREFIX;
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long text without a newline may wait before it is sent on its own.
pub const PARTIAL_AFTER: Duration = Duration::from_millis(25);
/// How long the end of a cell waits for the cell side's flush answer.
const FLUSH_WAIT: Duration = Duration::from_millis(250);
/// Longer runs of text without a newline are sent in pieces (records are never split).
const MAX_LINE: usize = 1 << 20;
/// What evcxr's runtime prints when a cell has returned.
const EXECUTION_COMPLETE: &[u8] = b"EVCXR_EXECUTION_COMPLETE";
const BEGIN_CONTENT: &str = "EVCXR_BEGIN_CONTENT ";
const END_CONTENT: &str = "EVCXR_END_CONTENT";
const FLUSHER_READY: &str = "\u{1e}torchbook {\"type\":\"flusher_ready\"}";
const FLUSHED: &str = "\u{1e}torchbook {\"type\":\"flushed\"}";

/// Puts relays on fds 1 and 2. Call in the worker before any other thread starts (it sets
/// `TORCHBOOK_FLUSH_FD`). On failure the worker runs without them, as plain evcxr would.
pub fn install() -> std::io::Result<()> {
    let (request_read, request_write) = pipe()?;
    let stdout = Relay::attach(1, "stdout", Some(request_write))?;
    let stderr = Relay::attach(2, "stderr", None)?;
    std::env::set_var("TORCHBOOK_FLUSH_FD", request_read.to_string());
    std::thread::Builder::new()
        .name("torchbook-stdout".into())
        .spawn(move || stdout.run())?;
    std::thread::Builder::new()
        .name("torchbook-stderr".into())
        .spawn(move || stderr.run())?;
    Ok(())
}

fn pipe() -> std::io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

struct Relay {
    fd: RawFd,
    input: File,
    out: File,
    stream: &'static str,
    pending: Vec<u8>,
    /// An evcxr content block being read: its MIME type and lines so far.
    block: Option<(String, Vec<String>)>,
    /// Consecutive complete blocks, shown together as one bundle.
    group: Vec<(String, String)>,
    flush_request: Option<File>,
    flusher_ready: bool,
}

impl Relay {
    /// Moves `fd` onto a new pipe and keeps the original as the relay's output.
    fn attach(fd: RawFd, stream: &'static str, flush_request: Option<RawFd>) -> std::io::Result<Relay> {
        // SAFETY: plain descriptor calls; every returned descriptor is checked and owned once.
        unsafe {
            let original = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
            if original < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let (read, write) = pipe()?;
            if libc::dup2(write, fd) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(write);
            Ok(Relay {
                fd: read,
                input: File::from_raw_fd(read),
                out: File::from_raw_fd(original),
                stream,
                pending: Vec::new(),
                block: None,
                group: Vec::new(),
                flush_request: flush_request.map(|fd| File::from_raw_fd(fd)),
                flusher_ready: false,
            })
        }
    }

    fn run(mut self) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let waiting = !self.pending.is_empty() || !self.group.is_empty();
            match self.wait_readable(waiting.then_some(PARTIAL_AFTER)) {
                Readiness::Readable => match self.input.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.take(&buffer[..n]),
                },
                Readiness::TimedOut => {
                    if self.block.is_none() {
                        self.emit_group();
                        self.emit_partial();
                    }
                }
            }
        }
        self.emit_group();
        self.emit_partial();
    }

    fn wait_readable(&self, timeout: Option<Duration>) -> Readiness {
        let mut poll = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map(|t| t.as_millis() as libc::c_int).unwrap_or(-1);
        loop {
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, ms) };
            match ready {
                0 => return Readiness::TimedOut,
                n if n > 0 => return Readiness::Readable,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                // Anything else: let the read report it.
                _ => return Readiness::Readable,
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line[..line.len() - 1]);
        }
        let is_record = self.pending.starts_with(RECORD_PREFIX.as_bytes());
        if self.pending.len() > MAX_LINE && !is_record && self.block.is_none() {
            self.emit_partial();
        }
    }

    fn line(&mut self, line: &[u8]) {
        if line == EXECUTION_COMPLETE && self.flush_request.is_some() {
            self.emit_group();
            self.finish_cell();
            self.write_line(line);
            return;
        }
        if self.stream != "stdout" {
            self.write_line(line);
            return;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((_, lines)) = &mut self.block {
            if text == END_CONTENT {
                let (mime, lines) = self.block.take().expect("checked");
                self.group.push((mime, lines.join("\n")));
            } else {
                lines.push(text.into_owned());
            }
            return;
        }
        // Text printed without a newline just before a marker shares its line.
        for marker in [BEGIN_CONTENT, RECORD_PREFIX] {
            if let Some(at) = text.find(marker).filter(|&at| at > 0) {
                let (before, rest) = text.split_at(at);
                let (before, rest) = (before.to_owned(), rest.to_owned());
                self.emit_group();
                self.emit_stream(&before);
                self.line(rest.as_bytes());
                return;
            }
        }
        if let Some(mime) = text.strip_prefix(BEGIN_CONTENT) {
            let mime = mime.split(' ').next().unwrap_or_default().to_owned();
            self.block = Some((mime, Vec::new()));
            return;
        }
        if text == FLUSHER_READY {
            self.flusher_ready = true;
            return;
        }
        if text == FLUSHED {
            return;
        }
        self.emit_group();
        self.write_line(line);
    }

    /// Asks the cell side to flush and passes on what comes back, up to its `flushed` answer.
    fn finish_cell(&mut self) {
        if !self.flusher_ready {
            return;
        }
        let Some(request) = &mut self.flush_request else {
            return;
        };
        if request.write_all(b"f").is_err() {
            return;
        }
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                if let Some(before) = line.strip_suffix(FLUSHED) {
                    self.emit_stream(before);
                    break;
                }
                self.line(line.as_bytes());
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.wait_readable(Some(left)) {
                Readiness::TimedOut => break,
                Readiness::Readable => match self.input.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
                },
            }
        }
        self.emit_group();
        self.emit_partial();
    }

    /// Sends the blocks read so far: as a display record, or unchanged when they are only
    /// text/plain (evcxr's report of the cell's value, which must reach evcxr).
    fn emit_group(&mut self) {
        if self.group.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        if group.iter().all(|(mime, _)| mime == "text/plain") {
            for (mime, content) in group {
                let raw = format!("{BEGIN_CONTENT}{mime}\n{content}\n{END_CONTENT}");
                self.write_line(raw.as_bytes());
            }
            return;
        }
        let mut data = Map::new();
        for (mime, content) in group {
            let is_json = mime == "application/json" || mime.ends_with("+json");
            let value = match is_json.then(|| serde_json::from_str(&content)) {
                Some(Ok(json)) => json,
                _ => Value::String(content),
            };
            data.insert(mime, value);
        }
        let record = json!({"type": "display", "data": data, "metadata": {}});
        self.write_line(format!("{RECORD_PREFIX}{record}").as_bytes());
    }

    fn emit_partial(&mut self) {
        let unfinished_record = self.pending.starts_with(RECORD_PREFIX.as_bytes())
            || self.pending.starts_with(BEGIN_CONTENT.as_bytes());
        if self.pending.is_empty() || unfinished_record {
            return;
        }
        // Keep a UTF-8 sequence cut by the read together for the next piece.
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let piece: Vec<u8> = self.pending.drain(..valid).collect();
        self.emit_stream(&String::from_utf8_lossy(&piece));
    }

    fn emit_stream(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let record = json!({"type": "stream", "name": self.stream, "text": text});
        self.write_line(format!("{RECORD_PREFIX}{record}").as_bytes());
    }

    fn write_line(&mut self, line: &[u8]) {
        let _ = self.out.write_all(line).and_then(|_| self.out.write_all(b"\n"));
    }
}

enum Readiness {
    Readable,
    TimedOut,
}
