//! `:help`: torchbook's commands and notes, then evcxr's command list, sent as a pager payload
//! (JupyterLab shows it below the cell; Zeppelin and nbclient read the `data` bundle).

use crate::wire::engine::CellOutcome;
use crate::kernel::engine::Engine;
use serde_json::{json, Value};

const TORCHBOOK_HELP: &str = "\
torchbook — Rust notebooks with tch and a Keras-like model API preloaded
(`use torchbook::prelude::*` is already in scope).

Commands
  :help        this page
  :vars        the session's variables and their types
  :clear       drop all variables, items and dependencies; the prelude is loaded again
  :timing      toggle printing how long each cell took to compile and run
  :dep NAME = \"VERSION\"   add a crate (builds it the first time)
  :explain     toggle explaining compile errors

Interrupt (the stop button, or `jupyter` interrupt): `fit`, `evaluate` and `predict` stop within
one batch and keep the model and its History; long loops can call `check_interrupt()?`. A cell
that does not stop within TORCHBOOK_INTERRUPT_GRACE_MS (3000) is killed and its variables are
lost (the message names them).

Input: `torchbook::input(\"prompt\")`, `input_password(..)`, or reading std::io::stdin().
Rich output: `display(&x)`, `x.show()`, `clear_output(wait)`, `plot::line/scatter/histogram/bar`,
`plot::confusion_matrix`, `show_image(&t)`, `image_grid(&ts, &captions)`; a tensor as a cell value
shows its summary. TORCHBOOK_PLAIN=1 prints text only (for frontends that show only text).

Completion and Shift-Tab inspection come from rust-analyzer; std items need the `rust-src`
component (rustup component add rust-src).

evcxr commands
";

/// The `page` payload for `:help`.
pub async fn page(engine: &Engine) -> Value {
    let evcxr = match engine.evaluate(":help").await {
        CellOutcome::Value(value) => value.get("text/plain").cloned().unwrap_or_default(),
        CellOutcome::Failed(error) => format!("(evcxr's help is unavailable: {})", error.evalue),
    };
    let text = format!("{TORCHBOOK_HELP}{evcxr}");
    json!({
        "source": "page",
        "data": {"text/plain": text},
        "start": 0,
    })
}
