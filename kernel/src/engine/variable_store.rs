//! Swaps the variable store module evcxr writes into every cell for the runtime's compiled one
//! (`torchbook::cell_store`), so rustc does not compile the store's hash map code again for
//! every cell.
//!
//! Only evcxr 0.22's module text, byte for byte (checked by its hash), is swapped, and only in
//! a cell crate that depends on the `torchbook` runtime: a session without the prelude, or an
//! evcxr whose store differs, builds what evcxr wrote. docs/ARCHITECTURE.md, "One compile per
//! value cell".

use sha2::{Digest, Sha256};

/// The line evcxr opens the module with.
const MODULE_OPEN: &str = "mod evcxr_internal_runtime {";
/// SHA-256 (first 16 hex digits) of the module evcxr 0.22 writes, from `MODULE_OPEN` to its
/// closing brace: the one whose interface `torchbook::cell_store` implements.
const EVCXR_0_22_MODULE: &str = "cfb72137e085a255";
/// What the module becomes.
const RUNTIME_MODULE: &str = "mod evcxr_internal_runtime { pub use ::torchbook::cell_store::*; }";

/// Why a cell's source kept evcxr's own store.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// The cell has no variables, so evcxr wrote no store.
    NoStore,
    /// The module's text is not evcxr 0.22's (its hash, given).
    OtherText(String),
}

/// `source` with evcxr's store module replaced by the runtime's.
pub fn with_runtime_store(source: &str) -> Result<String, Kept> {
    let start = source.find(MODULE_OPEN).ok_or(Kept::NoStore)?;
    let end = start + closing_brace(&source[start..]).ok_or(Kept::OtherText("unbalanced".to_owned()))? + 1;
    let hash = hex::encode(&Sha256::digest(&source.as_bytes()[start..end])[..8]);
    if hash != EVCXR_0_22_MODULE {
        return Err(Kept::OtherText(hash));
    }
    // evcxr maps a compiler message back to the code it came from by line number: the lines
    // after the module must stay where they were.
    Ok(swap(source, start, end))
}

/// `source` with `start..end` replaced by the runtime's module and as many line breaks.
fn swap(source: &str, start: usize, end: usize) -> String {
    let lines = source[start..end].matches('\n').count();
    format!("{}{RUNTIME_MODULE}{}{}", &source[..start], "\n".repeat(lines), &source[end..])
}

/// True when the cell crate's manifest names the runtime as a dependency: only then can the
/// cell's source name `::torchbook`.
pub fn crate_has_runtime(manifest: &str) -> bool {
    let mut in_dependencies = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies && line.split(['=', ' ']).next() == Some("torchbook") {
            return true;
        }
    }
    false
}

/// The offset of the `}` that closes the first `{` in `text`. The module's braces inside
/// string literals (`"{name}"`) are balanced, and the hash check rules out any other text.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, byte) in text.bytes().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(offset);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dependency_on_the_runtime_counts() {
        assert!(crate_has_runtime("[package]\nname = \"ctx\"\n\n[dependencies]\ntorchbook = { path = \"/r\" }\n"));
        assert!(!crate_has_runtime("[package]\nname = \"torchbook\"\n[dependencies]\ntch = \"0.26\"\n"));
        assert!(!crate_has_runtime("[dependencies]\ntorchbook-display = \"1\"\n"));
        assert!(!crate_has_runtime("[dev-dependencies]\ntorchbook = \"1\"\n"));
    }

    #[test]
    fn later_lines_keep_their_numbers() {
        let module = "mod evcxr_internal_runtime {\npub struct S;\n}";
        let source = format!("fn a() {{}}\n{module}\nfn b() {{}}\n");
        let start = source.find(MODULE_OPEN).unwrap();
        let swapped = swap(&source, start, start + module.len());
        assert_eq!(swapped.lines().count(), source.lines().count());
        assert_eq!(swapped.lines().position(|l| l == "fn b() {}"), source.lines().position(|l| l == "fn b() {}"));
        assert!(swapped.contains(RUNTIME_MODULE));
    }

    #[test]
    fn a_module_of_other_text_is_kept() {
        let source = "fn a() {}\nmod evcxr_internal_runtime {\npub struct VariableStore {}\n}\nfn b() {}";
        assert!(matches!(with_runtime_store(source), Err(Kept::OtherText(_))));
        assert_eq!(with_runtime_store("fn a() {}"), Err(Kept::NoStore));
        assert_eq!(with_runtime_store("mod evcxr_internal_runtime { {"), Err(Kept::OtherText("unbalanced".to_owned())));
    }
}
