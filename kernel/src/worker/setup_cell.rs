// Run once in every fresh evcxr worker (see wire/worker.rs). It must compile as a cell on its own.
std::panic::set_hook(Box::new(|info| {
    fn json_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    let payload = info.payload();
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("Box<dyn Any>")
    };
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("<unnamed>").to_string();
    println!(
        "\u{1e}torchbook {{\"type\":\"panic\",\"message\":{},\"location\":{},\"thread\":{}}}",
        json_string(&message),
        json_string(&location),
        json_string(&thread)
    );
}));
// The cell side of the output relay (worker/output.rs): Rust buffers stdout until a newline, so
// flush it on a short timer, and on request at the end of every cell. The `;` after the block
// keeps it from being a final value (see engine/final_value.rs: evcxr cannot show one with the prelude).
if let Some(fd) = std::env::var("TORCHBOOK_FLUSH_FD").ok().and_then(|v| v.parse::<i32>().ok()) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let _ = std::thread::Builder::new().name("torchbook-flush-timer".into()).spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_millis(25));
        let _ = std::io::stdout().flush();
    });
    // SAFETY: the worker opened this pipe for this thread alone.
    let mut requests = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = std::thread::Builder::new().name("torchbook-flush".into()).spawn(move || {
        let mut byte = [0u8; 1];
        while matches!(requests.read(&mut byte), Ok(1)) {
            let mut out = std::io::stdout().lock();
            let _ = out.flush();
            let _ = out.write_all(b"\x1etorchbook {\"type\":\"flushed\"}\n");
            let _ = out.flush();
        }
    });
    println!("\u{1e}torchbook {{\"type\":\"flusher_ready\"}}");
};
