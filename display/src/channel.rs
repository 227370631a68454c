//! The side channel to the kernel: one line per record on stdout, `\x1e` (record separator) +
//! `torchbook ` + a JSON object (docs/ARCHITECTURE.md, "Side channel"). The whole record is
//! written under the stdout lock, so it cannot interleave with text printed by other threads,
//! and keeps its place among the cell's printed text.

use crate::{MimeBundle, Render};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

const RECORD_PREFIX: &str = "\u{1e}torchbook ";

/// Where output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// In a torchbook worker: rich records for the kernel.
    Rich,
    /// Anywhere else, or with `TORCHBOOK_PLAIN=1` (for frontends that show text only): the
    /// `text/plain` representation printed to stdout; live displays print lines instead.
    Text,
}

/// How output is shown in this process. The kernel's worker sets `TORCHBOOK_OUTPUT=records`.
pub fn output_mode() -> OutputMode {
    let plain = std::env::var("TORCHBOOK_PLAIN").is_ok_and(|v| !v.is_empty() && v != "0");
    let worker = std::env::var("TORCHBOOK_OUTPUT").is_ok_and(|v| v == "records");
    if worker && !plain {
        OutputMode::Rich
    } else {
        OutputMode::Text
    }
}

/// A display on screen, which [`DisplayHandle::update`] replaces in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayHandle {
    id: String,
}

impl DisplayHandle {
    /// The `display_id` the frontend knows this output by.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces what this display shows. (Frontends that ignore updates, like Zeppelin, keep
    /// showing the first render: show a final state with [`display`] when that matters.)
    pub fn update<R: Render + ?Sized>(&self, value: &R) {
        let bundle = value.render().ensure_text_plain();
        match output_mode() {
            OutputMode::Rich => write_record(&json!({
                "type": "update_display",
                "data": bundle.data(),
                "metadata": bundle.metadata(),
                "display_id": self.id,
            })),
            OutputMode::Text => print_text(&bundle),
        }
    }
}

/// Shows `value` now, as a new output; the handle updates it later.
pub fn display<R: Render + ?Sized>(value: &R) -> DisplayHandle {
    let handle = DisplayHandle { id: new_display_id() };
    let bundle = value.render().ensure_text_plain();
    match output_mode() {
        OutputMode::Rich => write_record(&json!({
            "type": "display",
            "data": bundle.data(),
            "metadata": bundle.metadata(),
            "display_id": handle.id,
        })),
        OutputMode::Text => print_text(&bundle),
    }
    handle
}

/// Clears the cell's output; with `wait`, only when the next output arrives (no flicker).
pub fn clear_output(wait: bool) {
    if output_mode() == OutputMode::Rich {
        write_record(&json!({"type": "clear_output", "wait": wait}));
    }
}

/// Reports `bundle` as the cell's value (its `execute_result`). Used by `evcxr_display`.
pub fn emit_result(bundle: &MimeBundle) {
    let bundle = bundle.clone().ensure_text_plain();
    match output_mode() {
        OutputMode::Rich => write_record(&json!({
            "type": "result",
            "data": bundle.data(),
            "metadata": bundle.metadata(),
        })),
        OutputMode::Text => print_text(&bundle),
    }
}

fn write_record(record: &Value) {
    let mut out = std::io::stdout().lock();
    // Text printed without a newline must not end up inside the record's line.
    let _ = out.flush();
    let _ = writeln!(out, "{RECORD_PREFIX}{record}");
    let _ = out.flush();
}

fn print_text(bundle: &MimeBundle) {
    println!("{}", bundle.text_plain());
}

/// Unique across cells and kernels: every cell library has its own copy of this crate's
/// statics, so the counter alone would repeat.
fn new_display_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("tb-{:x}-{nanos:x}-{count}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_ids_differ() {
        assert_ne!(new_display_id(), new_display_id());
    }
}
