//! The real types behind a cell's placeholder types (see `crate::engine::annotate`), found by
//! rustc, in the cargo stand-in, just before the cell is built.
//!
//! evcxr writes a new variable's placeholder wherever it needs the variable's type: the
//! user's `let`, and `put_variable::<P>(stringify!(v), v)` that stores it. To learn the type,
//! the stand-in type-checks a copy of the cell crate in which the user's `let` has no type
//! and the store is `let () = v;`: rustc's mismatch error names the type ("this expression
//! has type `torchbook::prelude::Tensor`"), with full public paths under
//! `-Z trim-diagnostic-paths=false` (rustc's path printing picks re-exports a cell can name).
//! Only the check runs (no code generation, no link): about as long as type checking the cell.
//! The answer is kept per placeholder in the crate's target folder, and every build of the
//! cell crate gets `type P = <type>;` appended for the placeholders it uses, so that later
//! cells take the variable back under its real type. Appending keeps every line of evcxr's
//! source where it was, so compiler messages still point into the user's code.
//!
//! A cell run again (the commonest thing in a notebook) would pay for the check every time,
//! since each run's variables get new placeholders. The engine notes which cell, and which
//! `let` in it, each placeholder was written into ([`note_cell_of_placeholders`]); a new
//! placeholder from the same `let` of the same cell text as one whose type is known is
//! *guessed* to have that type ([`Guesses::Allowed`]). The caller builds the cell with the
//! guesses and keeps them ([`remember`]) only if the build succeeds; otherwise it puts the
//! source back and resolves again without guessing, so a wrong guess (the session around the
//! cell changed its types) costs one failed build and never shows.

use crate::engine::annotate::PLACEHOLDER_PREFIX;
use std::collections::BTreeMap;
use std::path::Path;

/// Placeholder → type, for the crate's whole session.
const TYPES_FILE: &str = "target/torchbook-variable-types.json";
/// Lines of `placeholder<TAB>cell key`, appended by the engine (see [`note_cell_of_placeholders`]).
const CELLS_FILE: &str = "target/torchbook-placeholder-cells.tsv";
const PROBE_DIR: &str = "target/torchbook-type-probe";

/// The rustc command (program first) and environment a cell crate is built with.
pub type RustcCommand = (Vec<String>, Vec<(String, String)>);

/// Whether [`resolve`] may take a new placeholder's type from an earlier run of its cell.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Guesses {
    Allowed,
    Never,
}

/// What [`resolve`] found out.
pub enum Outcome {
    /// The source names no placeholder, or all of them are defined now; the ones defined by
    /// a guess, with their types (to [`remember`] once the cell builds).
    Ready(Vec<(String, String)>),
    /// Some variable's type cannot be named; the errors are cargo messages for evcxr.
    Failed(Vec<serde_json::Value>),
}

/// Defines every placeholder `crate_dir/src/lib.rs` uses, asking rustc (through `command`,
/// called at most once, only if some placeholder is new) for the ones not known yet.
pub fn resolve(crate_dir: &Path, command: &mut dyn FnMut() -> Option<RustcCommand>, guesses: Guesses) -> Outcome {
    let source_path = crate_dir.join("src/lib.rs");
    let Ok(source) = std::fs::read_to_string(&source_path) else { return Outcome::Ready(Vec::new()) };
    let used = placeholders_in(&source);
    if used.is_empty() {
        return Outcome::Ready(Vec::new());
    }
    let types_path = crate_dir.join(TYPES_FILE);
    let mut known: BTreeMap<String, String> =
        std::fs::read(&types_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut guessed = Vec::new();
    if guesses == Guesses::Allowed {
        let cells = placeholder_cells(crate_dir);
        for placeholder in used.iter().filter(|p| !known.contains_key(*p)) {
            if let Some(type_name) = guess(placeholder, &cells, &known) {
                guessed.push((placeholder.clone(), type_name));
            }
        }
    }
    let new: Vec<&String> =
        used.iter().filter(|p| !known.contains_key(*p) && !guessed.iter().any(|(g, _)| g == *p)).collect();
    let mut errors = Vec::new();
    // Placeholders whose variable has no type because its cell has errors of its own: `()`
    // for this build, whose errors are then the cell's.
    let mut failing = BTreeMap::new();
    if !new.is_empty() {
        let mut with_guesses = known.clone();
        with_guesses.extend(guessed.iter().cloned());
        let probe = ProbeSource::new(&source, &new, &with_guesses);
        let answer = command().and_then(|command| run_probe(crate_dir, &probe, &command));
        for (placeholder, variable, _) in &probe.stores {
            match &answer {
                None => errors.push(error_message(&format!(
                    "torchbook could not ask rustc for the type of the variable `{variable}` (see the kernel's log). \
                     Please give it an explicit type."
                ))),
                Some(answer) => match answer.types.get(placeholder) {
                    Some(Ok(type_name)) => {
                        known.insert(placeholder.clone(), type_name.clone());
                    }
                    Some(Err(reason)) => errors.push(error_message(&format!("The variable `{variable}` {reason}."))),
                    None if answer.other_errors => {
                        failing.insert(placeholder.clone(), "()".to_owned());
                    }
                    None => errors.push(error_message(&format!(
                        "Couldn't automatically determine type of variable `{variable}`.\nPlease give it an explicit type."
                    ))),
                },
            }
        }
        if let Ok(text) = serde_json::to_vec(&known) {
            let _ = std::fs::write(&types_path, text);
        }
    }
    if !errors.is_empty() {
        return Outcome::Failed(errors);
    }
    known.extend(failing);
    known.extend(guessed.iter().cloned());
    let aliases = aliases(&source, &used, &known);
    if !aliases.is_empty() {
        let _ = std::fs::write(&source_path, format!("{source}{aliases}"));
    }
    Outcome::Ready(guessed)
}

/// Keeps guessed types (from [`Outcome::Ready`]) after the cell built with them.
pub fn remember(crate_dir: &Path, guessed: &[(String, String)]) {
    let types_path = crate_dir.join(TYPES_FILE);
    let mut known: BTreeMap<String, String> =
        std::fs::read(&types_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    known.extend(guessed.iter().cloned());
    if let Ok(text) = serde_json::to_vec(&known) {
        let _ = std::fs::write(&types_path, text);
    }
}

/// Notes, for the engine, that `placeholders` (in the order they appear) were written into
/// the cell `code`: the n-th placeholder of the same text is the same `let`.
pub fn note_cell_of_placeholders(crate_dir: &Path, code: &str, placeholders: &[String]) {
    if placeholders.is_empty() {
        return;
    }
    use sha2::{Digest, Sha256};
    let cell: String = Sha256::digest(code.as_bytes()).iter().take(12).map(|b| format!("{b:02x}")).collect();
    let lines: String = placeholders.iter().enumerate().map(|(n, p)| format!("{p}\t{cell}:{n}\n")).collect();
    let path = crate_dir.join(CELLS_FILE);
    let _ = path.parent().map(std::fs::create_dir_all);
    let appended = std::fs::OpenOptions::new().create(true).append(true).open(&path);
    if let Ok(mut file) = appended {
        use std::io::Write;
        let _ = file.write_all(lines.as_bytes());
    }
}

/// Placeholder → the key of the cell and `let` it was written into.
fn placeholder_cells(crate_dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(crate_dir.join(CELLS_FILE)).unwrap_or_default();
    text.lines().filter_map(|line| line.split_once('\t')).map(|(p, key)| (p.to_owned(), key.to_owned())).collect()
}

/// The type of the latest known placeholder written into the same `let` of the same cell.
fn guess(placeholder: &str, cells: &BTreeMap<String, String>, known: &BTreeMap<String, String>) -> Option<String> {
    let key = cells.get(placeholder)?;
    let number = |p: &str| p.trim_start_matches(PLACEHOLDER_PREFIX).parse::<u64>().unwrap_or(0);
    cells
        .iter()
        .filter(|(other, other_key)| *other_key == key && other.as_str() != placeholder)
        .filter_map(|(other, _)| Some((number(other), known.get(other)?)))
        .max_by_key(|(n, _)| *n)
        .map(|(_, type_name)| type_name.clone())
}

/// The placeholder → type table of the crate in `crate_dir` (for `:vars` and inspection).
pub fn known_types(crate_dir: &Path) -> BTreeMap<String, String> {
    std::fs::read(crate_dir.join(TYPES_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Placeholder names in `text`, each once, in order of first use.
pub fn placeholders_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PLACEHOLDER_PREFIX) {
        let digits = rest[at + PLACEHOLDER_PREFIX.len()..].bytes().take_while(u8::is_ascii_digit).count();
        let end = at + PLACEHOLDER_PREFIX.len() + digits;
        let preceded_by_ident = rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
        if digits > 0 && !preceded_by_ident {
            let name = rest[at..end].to_owned();
            if !found.contains(&name) {
                found.push(name);
            }
        }
        rest = &rest[end..];
    }
    found
}

/// `type P = T;` lines for the placeholders `source` uses and does not define itself (a cell
/// may carry the definitions as items, see `Session::define_placeholders`).
fn aliases(source: &str, used: &[String], known: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for placeholder in used {
        if source.contains(&format!("type {placeholder} =")) {
            continue;
        }
        if let Some(type_name) = known.get(placeholder) {
            out.push_str(&format!("\n#[allow(non_camel_case_types)] type {placeholder} = {type_name};"));
        }
    }
    out
}

/// The cell crate's source as rustc is asked about it.
struct ProbeSource {
    text: String,
    /// (placeholder, variable, 1-based line of its `let () = variable;`).
    stores: Vec<(String, String, usize)>,
}

impl ProbeSource {
    fn new(source: &str, new: &[&String], known: &BTreeMap<String, String>) -> ProbeSource {
        let mut text = source.to_owned();
        let mut stores = Vec::new();
        for placeholder in new {
            // The user's `let` (as `annotate` wrote it) infers its type again.
            text = text.replace(&format!(": {placeholder} ="), " =").replace(&format!(": {placeholder};"), ";");
            let store_start = format!("evcxr_variable_store.put_variable::<{placeholder}>(stringify!(");
            while let Some(at) = text.find(&store_start) {
                let after = at + store_start.len();
                let Some(name_end) = text[after..].find(')') else { break };
                let variable = text[after..after + name_end].to_owned();
                let Some(statement_end) = text[at..].find(';') else { break };
                let line = text[..at].matches('\n').count() + 1;
                text.replace_range(at..at + statement_end + 1, &format!("let () = {variable};"));
                stores.push(((*placeholder).clone(), variable, line));
            }
        }
        // Placeholders known from earlier cells stand for their types; new ones that evcxr
        // also names elsewhere (there should be none) still resolve.
        let used = placeholders_in(&text);
        text.push_str(&aliases(&text, &used, known));
        for placeholder in used.iter().filter(|p| !known.contains_key(*p)) {
            text.push_str(&format!("\n#[allow(non_camel_case_types)] struct {placeholder};"));
        }
        ProbeSource { text, stores }
    }
}

/// Type-checks `probe` with the cell's rustc command; the type rustc names for each store,
/// or why it cannot be a variable's type. `None` when rustc did not run or its dependencies
/// are not the record's.
fn run_probe(crate_dir: &Path, probe: &ProbeSource, (command, env): &RustcCommand) -> Option<ProbeAnswer> {
    let probe_dir = crate_dir.join(PROBE_DIR);
    std::fs::create_dir_all(&probe_dir).ok()?;
    let probe_file = probe_dir.join("lib.rs");
    std::fs::write(&probe_file, &probe.text).ok()?;
    let (program, args) = command.split_first()?;
    let args = probe_arguments(args, &probe_file, &probe_dir);
    let output = std::process::Command::new(program)
        .args(&args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        // For `-Z trim-diagnostic-paths`; only this check runs with it, nothing is kept.
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(crate_dir)
        .stdout(std::process::Stdio::null())
        .output()
        .ok()?;
    let diagnostics: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    if diagnostics.iter().any(|d| ["E0460", "E0461", "E0463", "E0514"].contains(&d["code"]["code"].as_str().unwrap_or_default())) {
        return None;
    }
    let mut types = BTreeMap::new();
    let mut store_errors = 0;
    for (placeholder, _, line) in &probe.stores {
        if let Some(type_name) = diagnostics.iter().find_map(|d| type_at_line(d, *line)) {
            types.insert(placeholder.clone(), nameable(&type_name));
            store_errors += 1;
        }
    }
    let all_errors = diagnostics.iter().filter(|d| d["level"] == "error").count();
    Some(ProbeAnswer { types, other_errors: all_errors > store_errors })
}

/// What the probe learnt: each store's type (or why it cannot be kept), and whether the cell
/// has errors of its own.
struct ProbeAnswer {
    types: BTreeMap<String, Result<String, String>>,
    other_errors: bool,
}

/// The recorded rustc arguments turned into a metadata-only check of `probe_file`.
fn probe_arguments(args: &[String], probe_file: &Path, probe_dir: &Path) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--out-dir" {
            iter.next();
            out.push(arg.clone());
            out.push(probe_dir.to_string_lossy().into_owned());
        } else if arg.starts_with("--emit") {
            out.push("--emit=metadata".to_owned());
        } else if arg.starts_with("incremental=") && out.last().is_some_and(|a| a == "-C") {
            out.push(format!("incremental={}", probe_dir.join("incremental").display()));
        } else if arg.ends_with("src/lib.rs") && !arg.starts_with('-') {
            out.push(probe_file.to_string_lossy().into_owned());
        } else {
            out.push(arg.clone());
        }
    }
    out.push("-Ztrim-diagnostic-paths=false".to_owned());
    out
}

/// The type named by an E0308 about the `let () = v;` on `line`.
fn type_at_line(diagnostic: &serde_json::Value, line: usize) -> Option<String> {
    if diagnostic["code"]["code"] != "E0308" {
        return None;
    }
    diagnostic["spans"].as_array()?.iter().find_map(|span| {
        if span["line_start"].as_u64()? as usize != line {
            return None;
        }
        let label = span["label"].as_str()?;
        let type_name = label.strip_prefix("this expression has type `")?.strip_suffix('`')?;
        Some(type_name.to_owned())
    })
}

/// A type as a cell can write it, or why a variable cannot have it.
fn nameable(type_name: &str) -> Result<String, String> {
    // Literals nothing else constrains: the types rustc falls back to.
    let type_name = &with_static_lifetimes(&type_name.replace("{integer}", "i32").replace("{float}", "f64"));
    if type_name.contains("{closure@") || type_name.contains("{async closure@") {
        return Err("is a closure, which cannot be kept for later cells. Box it \
                    (`let f: Box<dyn Fn(i32) -> i32> = Box::new(|x| x + 1);`), or wrap the code in braces"
            .to_owned());
    }
    if type_name.contains("impl ") {
        return Err(format!(
            "has the type `{type_name}`, which cannot be named, so it cannot be kept for later cells. \
             Collect it into a named type (`.collect::<Vec<_>>()`), box it, or wrap the code in braces"
        ));
    }
    if type_name.contains('{') || type_name.contains('_') && type_name.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == "_") {
        return Err(format!("has the type `{type_name}`, which rustc could not settle. Please give it an explicit type"));
    }
    // Items the cell defines are printed with the cell function's path; evcxr puts them at
    // the crate root.
    let mut type_name = type_name.to_owned();
    while let Some(at) = type_name.find("run_user_code_") {
        let end = type_name[at..].find("::").map_or(type_name.len(), |e| at + e + 2);
        type_name.replace_range(at..end, "");
    }
    Ok(type_name)
}

/// The type with its elided and anonymous lifetimes written as `'static`: an alias at the
/// crate root must name them, and evcxr only keeps `'static` values (`Box<dyn Any>`) anyway.
fn with_static_lifetimes(type_name: &str) -> String {
    let mut out = String::with_capacity(type_name.len() + 8);
    let mut chars = type_name.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '&' && chars.peek() != Some(&'\'') {
            out.push_str("'static ");
        }
    }
    out.replace("'_", "'static")
}

/// An error for evcxr, as cargo would report one.
fn error_message(message: &str) -> serde_json::Value {
    serde_json::json!({
        "reason": "compiler-message",
        "message": {
            "$message_type": "diagnostic",
            "message": message,
            "code": null,
            "level": "error",
            "spans": [],
            "children": [],
            "rendered": format!("error: {message}\n"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_is_guessed_from_the_latest_run_of_its_let() {
        let dir = std::env::temp_dir().join(format!("torchbook-guess-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = |n: u32| format!("{PLACEHOLDER_PREFIX}{n}");
        note_cell_of_placeholders(&dir, "let a = 1; let b = 2.0;", &[p(1), p(2)]);
        note_cell_of_placeholders(&dir, "let a = 1u8;", &[p(3)]);
        note_cell_of_placeholders(&dir, "let a = 1; let b = 2.0;", &[p(4), p(5)]);
        note_cell_of_placeholders(&dir, "let a = 1; let b = 2.0;", &[p(6), p(7)]);
        let cells = placeholder_cells(&dir);
        let known = BTreeMap::from([(p(1), "i32".to_owned()), (p(2), "f64".to_owned()), (p(3), "u8".to_owned()), (p(4), "i64".to_owned())]);
        // The same `let` of the same cell, the latest run with a known type; never another
        // cell's, never another `let`'s.
        assert_eq!(guess(&p(6), &cells, &known).as_deref(), Some("i64"));
        assert_eq!(guess(&p(7), &cells, &known).as_deref(), Some("f64"));
        assert_eq!(guess(&p(3), &cells, &known), None);
        assert_eq!(guess(&p(8), &cells, &known), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn placeholders_are_found_once_each() {
        let text = "let t: __tb_infer_3 = f(); put::<__tb_infer_3>(); x__tb_infer_9; __tb_infer_12";
        assert_eq!(placeholders_in(text), vec!["__tb_infer_3", "__tb_infer_12"]);
    }

    #[test]
    fn the_probe_stores_nothing_and_asks_for_the_type() {
        let source = "fn run_user_code_2() {\nlet t: __tb_infer_1 = f();\nevcxr_variable_store.put_variable::<__tb_infer_1>(stringify!(t), t);\n}";
        let probe = ProbeSource::new(source, &[&"__tb_infer_1".to_owned()], &BTreeMap::new());
        assert!(probe.text.starts_with("fn run_user_code_2() {\nlet t = f();\nlet () = t;\n}"));
        assert_eq!(probe.stores, vec![("__tb_infer_1".to_owned(), "t".to_owned(), 3)]);
    }

    #[test]
    fn types_are_made_nameable_or_refused() {
        assert_eq!(nameable("{integer}"), Ok("i32".to_owned()));
        assert_eq!(nameable("std::option::Option<{float}>"), Ok("std::option::Option<f64>".to_owned()));
        assert_eq!(nameable("std::vec::Vec<u8>"), Ok("std::vec::Vec<u8>".to_owned()));
        assert_eq!(nameable("run_user_code_4::Point"), Ok("Point".to_owned()));
        assert!(nameable("{closure@src/lib.rs:3:9: 3:11}").is_err());
        assert!(nameable("impl Iterator<Item = i32>").is_err());
        assert!(nameable("std::vec::Vec<_>").is_err());
        assert_eq!(nameable("my_type_name"), Ok("my_type_name".to_owned()));
        assert_eq!(
            nameable("std::collections::HashMap<&str, &mut [u8]>"),
            Ok("std::collections::HashMap<&'static str, &'static mut [u8]>".to_owned())
        );
        assert_eq!(nameable("std::slice::Iter<'_, i32>"), Ok("std::slice::Iter<'static, i32>".to_owned()));
    }

    #[test]
    fn known_placeholders_become_aliases_once() {
        let known = BTreeMap::from([("__tb_infer_1".to_owned(), "i32".to_owned())]);
        let used = vec!["__tb_infer_1".to_owned()];
        assert!(aliases("x: __tb_infer_1", &used, &known).contains("type __tb_infer_1 = i32;"));
        assert!(aliases("type __tb_infer_1 = i32;", &used, &known).is_empty());
    }
}
