//! One evcxr session: the context plus what must be re-run whenever evcxr restarts its worker,
//! and how a cell is executed — the prelude, the final value rewrite (see `final_value`), the
//! idle warm-up, `:clear`, inspection, and input requests to the frontend.

use crate::engine::annotate::{self, Annotated};
use crate::engine::{compile_error, parameters, rust_src, type_probe};
use crate::wire::cell_error::CellError;
use crate::trace::trace;
use crate::wire::engine::{CellOutcome, Completions, EngineEvent, Inspection};
use crate::wire::worker::WORKER_SETUP;
use crate::prelude::{prelude_cell, PreludeConfig};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Who shows a cell's final value.
#[derive(Clone, Copy)]
pub(crate) enum FinalValue {
    /// The prelude's `cell_value` (one compile; see [`crate::engine::final_value`]), when loaded.
    ThroughPrelude,
    /// Returned by evcxr as text/plain (its `Debug` text): what `user_expressions` need, since
    /// a value shown by the prelude arrives as a side-channel record.
    ThroughEvcxr,
}

/// The evcxr context plus what must be re-run whenever evcxr restarts its worker.
pub(crate) struct Session {
    pub(crate) context: evcxr::CommandContext,
    /// Run again in a worker that evcxr restarted (variables lost, dependencies kept).
    setup: String,
    /// The prelude cell, run again after `:clear` (which drops dependencies too).
    prelude: Option<String>,
    /// A taken spare's adoption cell, run again after `:clear` too.
    adoption: Option<String>,
    events: UnboundedSender<EngineEvent>,
    /// While set, the worker's output is dropped (the warm-up's, which belongs to no cell).
    quiet: Arc<AtomicBool>,
    /// Placeholder types evcxr has as items, for rust-analyzer (see `prepare_analysis`).
    placeholders_defined: HashSet<String>,
}

impl Session {
    pub(crate) fn start(
        mut context: evcxr::CommandContext,
        prelude: Option<PreludeConfig>,
        events: UnboundedSender<EngineEvent>,
        quiet: Arc<AtomicBool>,
        note: &dyn Fn(String),
    ) -> Session {
        let started = std::time::Instant::now();
        let mut setup = WORKER_SETUP.to_owned();
        let mut loaded = None;
        match prelude {
            // One cell for the prelude and the worker setup: every cell evcxr compiles costs a
            // rustc run and a link, which the first cell of a kernel waits for.
            Some(config) => {
                let cell = prelude_cell(&config.runtime);
                match context.execute(&annotated(&format!("{cell}\n{WORKER_SETUP}")).code) {
                    Ok(outputs) => {
                        trace(&format!("prelude cell phases: {:?}", outputs.phases.iter().map(|p| (p.name.as_str(), p.duration)).collect::<Vec<_>>()));
                        setup.push('\n');
                        setup.push_str(crate::prelude::PRELUDE_WORKER_SETUP);
                        loaded = Some(cell);
                    }
                    Err(e) => {
                        note(format!(
                            "torchbook: the prelude failed to load, so cells run plain Rust: {}",
                            crate::engine::compile_error::from_evcxr(&e, "").evalue
                        ));
                        // A failed `:dep` would break every later cell: `:clear` drops it (and
                        // restarts the worker) in the same context, whose output the forwarder
                        // already reads.
                        if let Err(e) = context.execute(":clear").and_then(|_| context.execute(WORKER_SETUP)) {
                            eprintln!("torchbook: resetting after the failed prelude failed too: {e}");
                        }
                    }
                }
            }
            None => {
                if let Err(e) = context.execute(WORKER_SETUP) {
                    eprintln!("torchbook: worker setup failed: {e}");
                }
            }
        }
        trace(&format!("session ready ({} prelude) in {:?}", if loaded.is_some() { "with" } else { "without" }, started.elapsed()));
        Session {
            context,
            setup,
            prelude: loaded,
            adoption: None,
            events,
            quiet,
            placeholders_defined: HashSet::new(),
        }
    }

    /// Pays, while nobody waits, what the first tch cell of a session costs beyond its own
    /// compile: rust-analyzer loading tch and inferring a tensor variable's type (evcxr asks it
    /// for the type of every new variable; about 2.5 s the first time), finding how to name
    /// that type from a cell, and rustc's first use of tch's generics and of evcxr's variable
    /// store for `Tensor`. The variable is a real top-level one, so that all of this happens;
    /// the early return by `?` makes evcxr forget it again (as it does for any cell that ends
    /// that way), and its message is not shown: the output is muted meanwhile.
    pub(crate) fn warm_up(&mut self) {
        if self.prelude.is_none() {
            return;
        }
        let started = std::time::Instant::now();
        // The value goes through the same rewrite as a user's (its trait dispatch is the
        // costliest first-time inference of all); the early return comes after it.
        let value_cell = "let torchbook_warm_up = Tensor::randn(&[2, 2], FLOAT_CPU);\ntorchbook_warm_up.sum(Kind::Float)";
        let shown = crate::engine::final_value::rewrite(value_cell).map_or_else(|| value_cell.to_owned(), |r| r.code);
        let cell = format!("{shown}\nErr::<(), _>(std::fmt::Error)?;");
        self.quiet.store(true, Ordering::SeqCst);
        if let Err(e) = self.context.execute(&annotated(&cell).code) {
            eprintln!("torchbook: warm-up cell failed (harmless): {e}");
        }
        // The message of the `?` reaches us through the worker's stderr relay, a moment later.
        std::thread::sleep(std::time::Duration::from_millis(50));
        self.quiet.store(false, Ordering::SeqCst);
        trace(&format!("warm-up done in {:?}", started.elapsed()));
    }

    /// Runs the cell that gives a taken spare's worker its kernel's directory and variables
    /// (see [`crate::spare`]), and again in every worker evcxr starts after this one.
    pub(crate) fn adopt(&mut self, cell: &str) {
        let started = std::time::Instant::now();
        match self.context.execute(&annotated(cell).code) {
            Ok(_) => {
                self.setup.push('\n');
                self.setup.push_str(cell);
                self.adoption = Some(cell.to_owned());
            }
            Err(e) => eprintln!("torchbook: could not move the worker to this kernel's directory: {e}"),
        }
        trace(&format!("worker adopted by this kernel in {:?}", started.elapsed()));
    }

    /// `:clear`: evcxr drops all state and starts a fresh worker; the worker setup and the
    /// prelude are loaded again, so the session is as a new kernel's.
    pub(crate) fn clear(&mut self) -> CellOutcome {
        if let Err(error) = self.context.execute(":clear") {
            return CellOutcome::Failed(compile_error::from_evcxr(&error, ":clear"));
        }
        self.placeholders_defined.clear();
        rust_src::narrow();
        if let Err(e) = self.context.execute(WORKER_SETUP) {
            eprintln!("torchbook: worker setup failed after :clear: {e}");
        }
        if let Some(prelude) = &self.prelude {
            if let Err(error) = self.context.execute(&annotated(prelude).code) {
                return CellOutcome::Failed(compile_error::from_evcxr(&error, prelude));
            }
        }
        if let Some(adoption) = &self.adoption {
            if let Err(e) = self.context.execute(&annotated(adoption).code) {
                eprintln!("torchbook: could not move the worker to this kernel's directory after :clear: {e}");
            }
        }
        CellOutcome::Value(HashMap::new())
    }

    /// Completions at `byte_pos` of `code`, from evcxr's rust-analyzer.
    pub(crate) fn complete(&mut self, code: &str, byte_pos: usize) -> Completions {
        self.prepare_analysis();
        match self.context.completions(code, byte_pos) {
            Ok(c) => Completions {
                matches: c.completions.into_iter().map(|c| c.code).collect(),
                start: c.start_offset,
                end: c.end_offset,
            },
            Err(_) => Completions { matches: Vec::new(), start: byte_pos, end: byte_pos },
        }
    }

    /// Before a completion or inspection, while variable types come from rustc: rust-analyzer
    /// gets its wide view (once), and the placeholders of the session's variables become items
    /// of evcxr's (`type __tb_infer_7 = torchbook::prelude::Tensor;`), which evcxr hands to
    /// rust-analyzer with every source, so that it knows what `t.` can be followed by. That
    /// costs one quiet compile when variables are new since the last completion.
    fn prepare_analysis(&mut self) {
        if !annotate::enabled() {
            return;
        }
        let Some(crate_dir) = std::env::var_os("EVCXR_TMPDIR").map(std::path::PathBuf::from) else { return };
        let known = type_probe::known_types(&crate_dir);
        let missing: Vec<(String, String)> = self
            .context
            .variables_and_types()
            .filter(|(_, placeholder)| !self.placeholders_defined.contains(*placeholder))
            .filter_map(|(_, placeholder)| Some((placeholder.to_owned(), known.get(placeholder)?.clone())))
            .collect();
        if !missing.is_empty() {
            self.define_placeholders(missing);
        }
        if rust_src::widen() {
            self.reload_analysis();
        }
    }

    /// Makes rust-analyzer reload the project, in its wide view: it reloads when the manifest
    /// evcxr writes changes, and evcxr writes it from its dependencies. The prelude's `:dep`
    /// is declared again with `default-features = true` spelled out: the same dependency, a
    /// different line. (The next build then goes through cargo once, as after any `:dep`.)
    fn reload_analysis(&mut self) {
        let started = std::time::Instant::now();
        let Some(declared) = self.prelude.as_deref().and_then(crate::prelude::prelude_dep_declared_again) else {
            trace("rust-analyzer keeps its lean view: no prelude dependency to declare again");
            return;
        };
        if let Err(e) = self.context.execute(&declared) {
            eprintln!("torchbook: rust-analyzer's wide view: {e}");
        }
        trace(&format!("rust-analyzer's wide view requested in {:?} (first completion or inspection)", started.elapsed()));
    }

    /// Makes evcxr keep `type <placeholder> = <type>;` items, which it then hands to
    /// rust-analyzer with every source.
    fn define_placeholders(&mut self, missing: Vec<(String, String)>) {
        let cell: String = missing
            .iter()
            .map(|(placeholder, type_name)| format!("#[allow(non_camel_case_types)] type {placeholder} = {type_name};\n"))
            .collect();
        self.quiet.store(true, Ordering::SeqCst);
        match self.context.execute(&cell) {
            Ok(_) => self.placeholders_defined.extend(missing.into_iter().map(|(placeholder, _)| placeholder)),
            Err(e) => eprintln!("torchbook: variable types for rust-analyzer: {e}"),
        }
        self.quiet.store(false, Ordering::SeqCst);
    }

    pub(crate) fn inspect(&mut self, code: &str, byte_pos: usize) -> Inspection {
        let name_start = code[..byte_pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let name = &code[name_start..byte_pos];
        self.prepare_analysis();
        let variable_type = self
            .context
            .variables_and_types()
            .find(|(variable, _)| *variable == name)
            .map(|(_, ty)| real_type(ty));
        // rust-analyzer panics on some inputs; a failed hover is just no information.
        let hover = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.context.hover_at(code, byte_pos)))
            .ok()
            .and_then(Result::ok)
            .filter(|(plain, _)| !plain.trim().is_empty());
        Inspection { hover, variable_type }
    }

    /// papermill's injected parameters (`:param` lines), bound with the types the notebook
    /// declared for them (see [`parameters`]).
    fn bind_parameters(&mut self, code: &str, final_value: FinalValue) -> CellOutcome {
        let declared: HashMap<String, String> =
            self.context.variables_and_types().map(|(name, ty)| (name.to_owned(), real_type(ty))).collect();
        match parameters::parse(code).and_then(|parsed| parameters::to_rust(&parsed, &declared)) {
            Ok(bindings) => self.execute_cell(&bindings, final_value),
            Err(error) => CellOutcome::Failed(CellError::parameter(&error.to_string())),
        }
    }

    pub(crate) fn execute_cell(&mut self, code: &str, final_value: FinalValue) -> CellOutcome {
        let variables: Vec<String> = self
            .context
            .variables_and_types()
            .map(|(name, _)| name.to_owned())
            .collect();
        if code.trim() == ":clear" {
            return self.clear();
        }
        if parameters::is_parameter_cell(code) {
            return self.bind_parameters(code, final_value);
        }
        let events = self.events.clone();
        let mut callbacks = evcxr::EvalCallbacks {
            input_reader: &|request| read_input(&events, &request.prompt, request.is_password),
        };
        let cell_started = std::time::Instant::now();
        // With the prelude, the final value is shown by the prelude's code: one compile instead
        // of evcxr's two (see `final_value`).
        let annotated = match final_value {
            FinalValue::ThroughPrelude => annotated(code),
            FinalValue::ThroughEvcxr => Annotated::unchanged(code),
        };
        let rewritten = match (final_value, &self.prelude) {
            (FinalValue::ThroughPrelude, Some(_)) => crate::engine::final_value::rewrite(&annotated.code),
            _ => None,
        };
        let as_text;
        let source = match (&rewritten, final_value, &self.prelude) {
            (Some(rewritten), _, _) => rewritten.code.as_str(),
            // evcxr's own `Debug` fallback does not work with the prelude loaded (see
            // `torchbook::cell_value`), so the prelude formats the value.
            // (Parenthesised: evcxr takes a line that starts with `:` for a command.)
            (None, FinalValue::ThroughEvcxr, Some(_)) => {
                as_text = format!("(::torchbook::cell_value::EvcxrText(format!(\"{{:?}}\", &({code}))))");
                as_text.as_str()
            }
            _ => annotated.code.as_str(),
        };
        let result = self.context.execute_with_callbacks(source, &mut callbacks);
        trace(&format!("cell ran in {:?} ({:?})", cell_started.elapsed(), result.as_ref().map(|o| o.phases.iter().map(|p| (p.name.as_str(), p.duration)).collect::<Vec<_>>()).ok()));
        match result {
            // `:vars` lists the types evcxr knows: placeholders, shown as what they stand for.
            Ok(outputs) if code.trim_start().starts_with(":vars") => CellOutcome::Value(
                outputs.content_by_mime_type.into_iter().map(|(mime, text)| (mime, with_real_types(&text))).collect(),
            ),
            Ok(outputs) => CellOutcome::Value(outputs.content_by_mime_type),
            Err(evcxr::Error::SubprocessTerminated(message)) => {
                // evcxr has already started a fresh worker; it needs our hooks again.
                if let Err(e) = self.context.execute(&self.setup) {
                    eprintln!("torchbook: worker setup failed after restart: {e}");
                }
                CellOutcome::Failed(CellError::worker_died(&message, &variables))
            }
            Err(error) => CellOutcome::Failed(match &rewritten {
                Some(rewritten) => compile_error::from_rewritten_cell(&error, code, &|line, column| {
                    annotated.original_column(line, rewritten.original_column(line, column))
                }),
                None => compile_error::from_annotated_cell(&error, code, &annotated),
            }),
        }
    }
}

/// Asks the execute handler for a line of input and waits for it (evcxr's input callback, on
/// the engine thread). `torchbook::input` sends its prompt hex-encoded, because evcxr cuts
/// prompts at the first `:`.
fn read_input(events: &UnboundedSender<EngineEvent>, prompt: &str, password: bool) -> String {
    let prompt = decode_prompt(prompt);
    let (answer, reply) = std::sync::mpsc::channel();
    let asked = events.send(EngineEvent::InputRequest { prompt, password, answer }).is_ok();
    match reply.recv() {
        Ok(Some(value)) if asked => value.replace(['\r', '\n'], " "),
        _ => crate::wire::worker::INPUT_EOF.to_owned(),
    }
}

fn decode_prompt(prompt: &str) -> String {
    let Some(hex) = prompt.strip_prefix("tbhex") else {
        return prompt.to_owned();
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| prompt.to_owned())
}


/// `code` with placeholder types for its new variables, when types come from rustc.
fn annotated(code: &str) -> Annotated {
    if annotate::enabled() {
        let annotated = annotate::annotate(code);
        if let Some(crate_dir) = std::env::var_os("EVCXR_TMPDIR") {
            type_probe::note_cell_of_placeholders(std::path::Path::new(&crate_dir), code, &type_probe::placeholders_in(&annotated.code));
        }
        annotated
    } else {
        Annotated::unchanged(code)
    }
}

/// `text` with every placeholder replaced by the type it stands for.
fn with_real_types(text: &str) -> String {
    let placeholders = type_probe::placeholders_in(text);
    if placeholders.is_empty() {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    // Longest first: `__tb_infer_12` before `__tb_infer_1`.
    let mut placeholders = placeholders;
    placeholders.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for placeholder in placeholders {
        let real = real_type(&placeholder);
        let shown = if text.contains("<td") { html_escape(&real) } else { real };
        out = out.replace(&placeholder, &shown);
    }
    out
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The type a placeholder stands for (itself when it is none).
pub(crate) fn real_type(type_name: &str) -> String {
    if !type_name.starts_with(annotate::PLACEHOLDER_PREFIX) {
        return type_name.to_owned();
    }
    std::env::var_os("EVCXR_TMPDIR")
        .and_then(|dir| type_probe::known_types(std::path::Path::new(&dir)).remove(type_name))
        .unwrap_or_else(|| type_name.to_owned())
}
