//! A closed-loop load generator for `make bench-serve`: C clients, each a thread with one
//! keep-alive HTTP/1.1 connection sending the same request back to back for D seconds.
//! Prints one JSON line: requests per second, latency percentiles, errors. Plain std (no async
//! runtime, no HTTP library), so the client costs little of the CPUs the servers share.
//!
//! Usage: serve_load URL CLIENTS SECONDS BODY_FILE CONTENT_TYPE [HEADER: VALUE]…

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() >= 6, "usage: serve_load URL CLIENTS SECONDS BODY_FILE CONTENT_TYPE [HEADER: VALUE]…");
    let url = args[1].strip_prefix("http://").expect("an http:// URL");
    let (host, path) = url.split_at(url.find('/').unwrap_or(url.len()));
    let path = if path.is_empty() { "/" } else { path };
    let clients: usize = args[2].parse().unwrap();
    let seconds: f64 = args[3].parse().unwrap();
    let body = std::fs::read(&args[4]).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", args[5], body.len());
    for extra in &args[6..] {
        head.push_str(extra);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);

    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let results: Vec<(Vec<f64>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients).map(|_| scope.spawn(|| client(host, &request, end))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: usize = results.iter().map(|r| r.1).sum();
    let mut latencies: Vec<f64> = results.into_iter().flat_map(|r| r.0).collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| if latencies.is_empty() { f64::NAN } else { latencies[((latencies.len() - 1) as f64 * p).round() as usize] };
    println!(
        "{{\"clients\": {clients}, \"requests\": {}, \"errors\": {errors}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        pct(0.5) * 1e3,
        pct(0.99) * 1e3
    );
}

/// Latencies of the successful requests, and the number of failed ones.
fn client(host: &str, request: &[u8], end: Instant) -> (Vec<f64>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut connection: Option<BufReader<TcpStream>> = None;
    while Instant::now() < end {
        let start = Instant::now();
        let reader = match connection.as_mut() {
            Some(reader) => reader,
            None => match TcpStream::connect(host) {
                Ok(stream) => {
                    stream.set_nodelay(true).unwrap();
                    connection.insert(BufReader::new(stream))
                }
                Err(_) => {
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        match exchange(reader, request) {
            Ok(200) => latencies.push(start.elapsed().as_secs_f64()),
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                connection = None;
            }
        }
    }
    (latencies, errors)
}

fn exchange(reader: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<u16> {
    reader.get_mut().write_all(request)?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(std::io::Error::other)?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}
