//! Turning what went wrong in a cell into the `ename` / `evalue` / `traceback` triple the user
//! sees: compile errors with the offending line and a caret, panics, a worker that died.

use crate::final_value::Rewritten;
use crate::protocol::messages::ErrorInfo;
use evcxr::CompilationError;
use std::fmt::Write;

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

/// ANSI colour for tracebacks, off when `NO_COLOR` is set (Zeppelin shows escape codes raw).
fn paint(code: &str, text: &str) -> String {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        text.to_owned()
    } else {
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

impl CellError {
    fn new(ename: &str, evalue: impl Into<String>, traceback: Vec<String>) -> Self {
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

/// Converts an evcxr error for the cell `code`.
pub fn from_evcxr(error: &evcxr::Error, code: &str) -> CellError {
    match error {
        evcxr::Error::CompilationErrors(errors) => compile_errors(errors, code),
        evcxr::Error::TypeRedefinedVariablesLost(names) => CellError::new(
            "VariablesLost",
            format!("redefining a type dropped these variables: {}", names.join(", ")),
            vec![format!(
                "A type redefinition made these variables unusable: {}",
                names.join(", ")
            )],
        ),
        evcxr::Error::SubprocessTerminated(message) => CellError::worker_died(message, &[]),
        evcxr::Error::Message(message) => CellError::new(
            "Error",
            message.lines().next().unwrap_or_default(),
            message.lines().map(str::to_owned).collect(),
        ),
    }
}

/// Converts an evcxr error for the cell `code` that ran as `rewritten` (its final value handed
/// to the prelude, see [`crate::final_value`]): locations point at the cell as written.
pub fn from_rewritten_cell(error: &evcxr::Error, code: &str, rewritten: &Rewritten) -> CellError {
    let evcxr::Error::CompilationErrors(errors) = error else {
        return from_evcxr(error, code);
    };
    if errors.iter().any(|e| Rewritten::is_about_the_value(&e.message())) {
        let message = "the cell's final value cannot be shown: its type implements neither `Debug` \
                       nor torchbook's `Render`, and has no `evcxr_display` method";
        let traceback = vec![
            paint("31;1", &format!("error: {message}")),
            "  = help: end the cell with `;` to discard the value, or derive `Debug` for its type".to_owned(),
        ];
        return CellError::new("CompileError", message, traceback);
    }
    compile_errors_mapped(errors, code, &|line, column| rewritten.original_column(line, column))
}

fn compile_errors(errors: &[CompilationError], code: &str) -> CellError {
    compile_errors_mapped(errors, code, &|_, column| column)
}

/// `column_in_cell` maps a compiler column (line, column; 1-based) to the cell as written.
fn compile_errors_mapped(errors: &[CompilationError], code: &str, column_in_cell: &dyn Fn(usize, usize) -> usize) -> CellError {
    let evalue = errors
        .first()
        .map(|e| e.message())
        .unwrap_or_else(|| "compilation failed".to_owned());
    let source_lines: Vec<&str> = code.lines().collect();
    let mut traceback = Vec::new();
    for error in errors {
        traceback.push(render_one(error, &source_lines, column_in_cell));
    }
    CellError::new("CompileError", evalue, traceback)
}

/// One error as rustc would show it: headline, location, the cell line and a caret under the span.
fn render_one(error: &CompilationError, source_lines: &[&str], column_in_cell: &dyn Fn(usize, usize) -> usize) -> String {
    let mut out = String::new();
    let level = error.level();
    let headline = match error.code() {
        Some(code) => format!("{level}[{code}]: {}", error.message()),
        None => format!("{level}: {}", error.message()),
    };
    let _ = writeln!(out, "{}", paint("31;1", &headline));
    for spanned in error.spanned_messages() {
        let Some(span) = spanned.span else {
            if !spanned.label.is_empty() {
                let _ = writeln!(out, "  = {}", spanned.label);
            }
            continue;
        };
        let start_column = column_in_cell(span.start_line, span.start_column);
        let end_column = column_in_cell(span.end_line, span.end_column);
        let _ = writeln!(out, "  --> cell:{}:{}", span.start_line, start_column);
        let Some(line) = source_lines.get(span.start_line.saturating_sub(1)) else {
            continue;
        };
        let number = span.start_line.to_string();
        let gutter = " ".repeat(number.len());
        let width = if span.end_line == span.start_line {
            end_column.saturating_sub(start_column).max(1)
        } else {
            line.chars().count().saturating_sub(start_column - 1).max(1)
        };
        let caret = format!(
            "{}{} {}",
            " ".repeat(start_column.saturating_sub(1)),
            "^".repeat(width),
            spanned.label
        );
        let _ = writeln!(out, "{gutter} |");
        let _ = writeln!(out, "{number} | {line}");
        let _ = writeln!(out, "{gutter} | {}", paint("31;1", caret.trim_end()));
    }
    for help in error.help() {
        let _ = writeln!(out, "  = help: {help}");
    }
    out.trim_end().to_owned()
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
    fn worker_died_names_lost_variables() {
        let e = CellError::worker_died("Subprocess terminated with status: signal: 9", &[
            "a".into(),
            "model".into(),
        ]);
        assert_eq!(e.ename, "WorkerDied");
        assert!(e.traceback.last().unwrap().contains("a, model"));
    }
}
