//! Turning what went wrong in a cell into the `ename` / `evalue` / `traceback` triple the user
//! sees: panics, errors passed on with `?`, a worker or engine that died. Compile errors are
//! made from evcxr's in the engine (`engine::compile_error`).

use crate::protocol::messages::ErrorInfo;

/// An error to show for a cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl From<CellError> for ErrorInfo {
    fn from(e: CellError) -> Self {
        ErrorInfo {
            ename: e.ename,
            evalue: e.evalue,
            traceback: e.traceback,
        }
    }
}

/// ANSI colour for tracebacks, off when `NO_COLOR` is set and under Apache Zeppelin, which
/// shows escape codes raw.
pub fn paint(code: &str, text: &str) -> String {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) || under_zeppelin() {
        text.to_owned()
    } else {
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The kernel's side of `torchbook_display::frontend()` (the same rule; the kernel does not link
/// the display crate): `TORCHBOOK_FRONTEND` when set, else Zeppelin's own variables.
fn under_zeppelin() -> bool {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match var("TORCHBOOK_FRONTEND").map(|v| v.trim().to_ascii_lowercase()) {
        Some(setting) if setting == "zeppelin" || setting == "jupyter" => setting == "zeppelin",
        _ => var("ZEPPELIN_HOME").is_some() || var("INTERPRETER_GROUP_ID").is_some(),
    }
}

impl CellError {
    pub fn new(ename: &str, evalue: impl Into<String>, traceback: Vec<String>) -> Self {
        CellError {
            ename: ename.to_owned(),
            evalue: evalue.into(),
            traceback,
        }
    }

    /// A panic reported by the worker's panic hook.
    pub fn panic(message: &str, location: &str, thread: &str) -> Self {
        // Locations in `src/lib.rs` point into evcxr's generated crate, not at anything the user
        // wrote; locations in dependencies are worth showing.
        let at = if location.is_empty() || location.starts_with("src/lib.rs") {
            String::new()
        } else {
            format!(" at {location}")
        };
        let who = match thread {
            "" | "<unnamed>" | "main" => "cell".to_owned(),
            name => format!("thread '{name}'"),
        };
        let head = paint("31;1", &format!("{who} panicked{at}:"));
        let mut traceback = vec![head];
        traceback.extend(message.lines().map(str::to_owned));
        CellError::new("Panic", message, traceback)
    }

    /// An error the cell passed on with `?`, as a Python exception would fail it: `ename` is
    /// the error's type (`std::io::Error`, `torchbook::Error`; `Error` when unknown), `evalue`
    /// its message. libtorch's C++ context ("Exception raised from … at …" and its frames)
    /// follows the message in the traceback, and is left out of `evalue`.
    pub fn returned(type_name: &str, message: &str) -> Self {
        let ename = match type_name {
            "" => "Error".to_owned(),
            name => crate::wire::question_mark::readable_type_name(name),
        };
        let (message, context) = split_cpp_context(message);
        let message = if message.is_empty() { "the cell returned an error (its message is above)".to_owned() } else { message };
        let mut traceback = vec![paint("31;1", &format!("{ename}:")) + " " + message.lines().next().unwrap_or_default()];
        traceback.extend(message.lines().skip(1).map(str::to_owned));
        if !context.is_empty() && std::env::var_os("TORCHBOOK_CPP_CONTEXT").is_some_and(|v| v == "1") {
            traceback.push(paint("2", "libtorch's C++ context:"));
            traceback.extend(context.iter().map(|line| paint("2", line)));
        } else if !context.is_empty() {
            traceback.push(paint("2", "(libtorch's C++ context left out; TORCHBOOK_CPP_CONTEXT=1 shows it)"));
        }
        traceback.push(paint("2", "The cell returned this error through `?`; variables it defined are not kept."));
        CellError::new(&ename, message, traceback)
    }

    /// papermill's injected parameters could not be bound (see `engine::parameters`): nothing ran.
    pub fn parameter(message: &str) -> Self {
        let traceback = vec![
            paint("31;1", "ParameterError:") + " " + message,
            paint("2", "papermill's injected parameters were not bound, and nothing in this cell ran."),
        ];
        CellError::new("ParameterError", message, traceback)
    }

    /// The worker process ended (killed, aborted, crashed, or called `exit`).
    pub fn worker_died(message: &str, lost: &[String]) -> Self {
        let lost_line = if lost.is_empty() {
            "No variables were defined, so none were lost.".to_owned()
        } else {
            format!("Variables lost: {}", lost.join(", "))
        };
        let mut traceback = vec![paint(
            "31;1",
            "The process running your code ended; a fresh one has been started.",
        )];
        traceback.extend(message.lines().map(str::to_owned));
        traceback.push(lost_line);
        let summary = message.lines().last().unwrap_or("process ended").to_owned();
        CellError::new("WorkerDied", summary, traceback)
    }

    /// Cells cannot run at all because evcxr failed to start (e.g. no Rust toolchain).
    pub fn engine_unavailable(reason: &str) -> Self {
        let mut traceback = vec![paint(
            "31;1",
            "The Rust engine could not start, so cells cannot run:",
        )];
        traceback.extend(reason.lines().map(str::to_owned));
        CellError::new("EngineUnavailable", reason, traceback)
    }

    /// The engine process (evcxr and its analyser) ended during the cell; the kernel starts a
    /// new one for the next request, so everything the session held is gone.
    pub fn engine_died(how: &str) -> Self {
        let summary = format!("the Rust engine process stopped ({how})");
        let traceback = vec![
            paint("31;1", &format!("The Rust engine process stopped ({how}) while this cell ran.")),
            "The next cell starts a fresh engine: the session's variables and `:dep`s are lost.".to_owned(),
        ];
        CellError::new("EngineDied", &summary, traceback)
    }
}

/// Splits libtorch's C++ context lines out of an error message: "Exception raised from … at
/// …" and the "frame #n" lines after it, wherever they are, and the C++ stack trace lines
/// libtorch puts before a message when `TORCH_SHOW_CPP_STACKTRACES` is set.
fn split_cpp_context(message: &str) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut context = Vec::new();
    let mut in_frames = false;
    for line in message.lines() {
        let trimmed = line.trim_start();
        let is_context = trimmed.starts_with("Exception raised from ")
            || trimmed.starts_with("frame #")
            || (in_frames && trimmed.is_empty());
        if is_context {
            in_frames = true;
            context.push(line.to_owned());
        } else {
            in_frames = false;
            kept.push(line);
        }
    }
    while context.last().is_some_and(|l| l.trim().is_empty()) {
        context.pop();
    }
    (kept.join("\n").trim().to_owned(), context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_hides_generated_locations() {
        let e = CellError::panic("boom", "src/lib.rs:10:5", "main");
        assert_eq!(e.ename, "Panic");
        assert_eq!(e.evalue, "boom");
        assert!(!e.traceback[0].contains("src/lib.rs"));
        let e = CellError::panic("bad index", "/dep/src/x.rs:1:2", "main");
        assert!(e.traceback[0].contains("/dep/src/x.rs:1:2"));
    }

    #[test]
    fn an_error_returned_by_question_mark_names_its_type_and_puts_cpp_context_last() {
        let message = "libtorch: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)\n\
                       Exception raised from meta at /__w/pytorch/pytorch/aten/src/ATen/native/LinearAlgebra.cpp:197 (most recent call first):\n\
                       frame #0: c10::Error::Error(...) + 0x9a (0x7f in libc10.so)\n\
                       frame #1: ... (0x7f in libtorch_cpu.so)\n";
        let e = CellError::returned("torchbook::error::Error", message);
        assert_eq!(e.ename, "torchbook::Error");
        assert_eq!(e.evalue, "libtorch: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
        assert!(e.traceback[0].contains("torchbook::Error:") && e.traceback[0].contains("shapes cannot be multiplied"), "{:?}", e.traceback);
        assert!(!e.traceback.iter().any(|l| l.contains("frame #0")), "frames only behind the switch: {:?}", e.traceback);
        let e = CellError::returned("alloc::string::String", "boom");
        assert_eq!((e.ename.as_str(), e.evalue.as_str()), ("String", "boom"));
        let e = CellError::returned("", "");
        assert_eq!(e.ename, "Error");
        assert!(!e.evalue.is_empty());
    }

    #[test]
    fn worker_died_names_lost_variables() {
        let e = CellError::worker_died("Subprocess terminated with status: signal: 9", &[
            "a".into(),
            "model".into(),
        ]);
        assert_eq!(e.ename, "WorkerDied");
        assert!(e.traceback.last().unwrap().contains("a, model"));
    }
}
