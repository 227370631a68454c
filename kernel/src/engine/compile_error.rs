//! evcxr's errors as the user sees them: compile errors rendered like rustc's (the cell's line,
//! a caret under the span, positions in the cell as written), and evcxr's other failures.

use crate::engine::annotate::Annotated;
use crate::engine::final_value::Rewritten;
use crate::wire::cell_error::{paint, CellError};
use evcxr::CompilationError;
use std::fmt::Write;

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
/// to the prelude, see [`crate::engine::final_value`]): locations point at the cell as written.
/// `column_in_cell` maps a compiler position (line, column) to the column as written.
pub fn from_rewritten_cell(error: &evcxr::Error, code: &str, column_in_cell: &dyn Fn(usize, usize) -> usize) -> CellError {
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
    compile_errors_mapped(errors, code, column_in_cell)
}

/// Converts an evcxr error for the cell `code` that ran with placeholder types written in.
pub fn from_annotated_cell(error: &evcxr::Error, code: &str, annotated: &Annotated) -> CellError {
    match error {
        evcxr::Error::CompilationErrors(errors) => {
            compile_errors_mapped(errors, code, &|line, column| annotated.original_column(line, column))
        }
        other => from_evcxr(other, code),
    }
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

