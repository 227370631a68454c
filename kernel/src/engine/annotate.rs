//! Gives every new top-level variable of a cell a placeholder type, so that evcxr does not
//! need rust-analyzer to find it.
//!
//! evcxr stores each top-level variable between cells under its type, which it asks
//! rust-analyzer for, unless the `let` names one. rust-analyzer can only answer after it has
//! loaded the standard library and the prelude's dependencies: seconds of a cold kernel's
//! first cell and most of the engine's memory (docs/ARCHITECTURE.md, "Variable types"). So
//! the engine writes a placeholder into each `let` that has no type — `let t = …;` becomes
//! `let t: __tb_infer_7 = …;` — and evcxr takes the placeholder as the type. When the cell is
//! built, the cargo stand-in asks rustc for the real type and defines the placeholder as an
//! alias of it (`crate::engine::type_probe`).
//!
//! A `let` that destructures (`let (a, mut b) = …;`, `let Some(x) = … else { … };`) cannot
//! carry one type per variable, so it is wrapped: each variable gets a `let` of its own with
//! a placeholder, and a block runs the original statement and hands its variables out
//! (`let a: __tb_infer_8; let mut b: __tb_infer_9; (a, b) = { let (a, mut b) = …; (a, b) };`).
//! A `let` whose type leaves parts to inference (`let v: Vec<_> = …;`) is wrapped the same way.
//! Lines stay where they were; [`Annotated::original_column`] maps compiler columns back.

use ra_ap_syntax::ast::{self, AstNode, HasModuleItem, HasName};
use ra_ap_syntax::{Edition, SourceFile, SyntaxKind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether variable types come from rustc (the default) rather than from evcxr's
/// rust-analyzer (`TORCHBOOK_TYPES_FROM_RA=1`). Only the cargo stand-in resolves placeholders,
/// so without it (`TORCHBOOK_CELL_CARGO=1`, no cargo in the toolchain) evcxr's way is used.
pub fn enabled() -> bool {
    std::env::var("TORCHBOOK_TYPES_FROM_RA").map_or(true, |v| v != "1") && super::cell_build::stand_in_installed()
}

/// Every placeholder starts with this; the stand-in finds them by it.
pub const PLACEHOLDER_PREFIX: &str = "__tb_infer_";

const WRAPPER_START: &str = "fn __torchbook_cell() {\n";

/// Placeholders are numbered per engine process, which has one evcxr folder.
static NEXT_PLACEHOLDER: AtomicUsize = AtomicUsize::new(1);

/// A cell with placeholders written in, and where they went.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Annotated {
    pub code: String,
    /// Inserted text: (1-based line, 1-based column in `code`, characters inserted).
    insertions: Vec<(usize, usize, usize)>,
}

impl Annotated {
    /// `code` as it is.
    pub fn unchanged(code: &str) -> Annotated {
        Annotated { code: code.to_owned(), insertions: Vec::new() }
    }

    /// The column in the cell as written of a compiler position (1-based line and column in
    /// `code`). A position inside inserted text maps to where the insertion was made.
    pub fn original_column(&self, line: usize, column: usize) -> usize {
        let mut shift = 0;
        for &(at_line, at_column, length) in &self.insertions {
            if at_line != line || column < at_column {
                continue;
            }
            if column < at_column + length {
                return at_column - shift;
            }
            shift += length;
        }
        column - shift
    }
}

/// The cell with placeholder types for its new top-level variables. Code that does not parse,
/// and lines of evcxr commands, are left as they are (evcxr reports what is wrong).
pub fn annotate(code: &str) -> Annotated {
    let unchanged = || Annotated::unchanged(code);
    let masked: String = code
        .split_inclusive('\n')
        .map(|line| {
            if line.trim_start().starts_with(':') {
                line.chars().map(|c| if c == '\n' { c } else { ' ' }).collect()
            } else {
                line.to_owned()
            }
        })
        .collect();
    let wrapped = format!("{WRAPPER_START}{masked}\n}}");
    let parsed = SourceFile::parse(&wrapped, Edition::Edition2024);
    if !parsed.errors().is_empty() {
        return unchanged();
    }
    let Some(ast::Item::Fn(function)) = parsed.tree().items().next() else {
        return unchanged();
    };
    let Some(body) = function.body().and_then(|b| b.stmt_list()) else {
        return unchanged();
    };
    // (byte offset in `code`, text to insert there), in order.
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let offset = |node: &ra_ap_syntax::SyntaxNode, end: bool| {
        let range = node.text_range();
        usize::from(if end { range.end() } else { range.start() }) - WRAPPER_START.len()
    };
    let lets: Vec<ast::LetStmt> = body
        .statements()
        .filter_map(|statement| match statement {
            ast::Stmt::LetStmt(let_statement) => Some(let_statement),
            _ => None,
        })
        .collect();
    // A name bound again by a later top-level `let` is not a variable evcxr keeps: only the
    // last binding is stored, so only it gets a placeholder (the type probe learns types from
    // the store, and an earlier binding's placeholder would stay undefined).
    let bound_later = |index: usize, name: &str| {
        lets[index + 1..].iter().filter_map(|l| l.pat()).any(|p| bindings_of(&p).iter().any(|(n, _)| n == name))
    };
    for (index, let_statement) in lets.iter().enumerate() {
        let Some(pattern) = let_statement.pat() else { continue };
        // A type with `_` in it (`Vec<_>`) is one evcxr cannot take as written either.
        let partial_type = let_statement.ty().is_some_and(|ty| ty.syntax().descendants().any(|n| n.kind() == SyntaxKind::INFER_TYPE));
        let typed = let_statement.ty().is_some() && !partial_type;
        match &pattern {
            ast::Pat::IdentPat(ident) if ident.pat().is_none() && ident.ref_token().is_none() && !partial_type => {
                let is_binding = ident.name().is_some_and(|name| is_variable_name(&name.text()) && !bound_later(index, &name.text()));
                if is_binding && !typed {
                    inserts.push((offset(pattern.syntax(), true), format!(": {}", next_placeholder())));
                }
            }
            _ => {
                let bindings = bindings_of(&pattern);
                let kept = bindings.iter().filter(|(name, _)| !bound_later(index, name)).count();
                if kept == 0 || let_statement.semicolon_token().is_none() {
                    continue;
                }
                let mut prefix = String::new();
                for (name, mutable) in &bindings {
                    let mutable = if *mutable { "mut " } else { "" };
                    if bound_later(index, name) {
                        // Its type is left to rustc: evcxr keeps the later binding.
                        prefix.push_str(&format!("let {mutable}{name}; "));
                    } else {
                        prefix.push_str(&format!("let {mutable}{name}: {}; ", next_placeholder()));
                    }
                }
                let names: Vec<&str> = bindings.iter().map(|(name, _)| name.as_str()).collect();
                let handed_out = if names.len() == 1 { names[0].to_owned() } else { format!("({})", names.join(", ")) };
                prefix.push_str(&format!("{handed_out} = {{ "));
                inserts.push((offset(let_statement.syntax(), false), prefix));
                inserts.push((offset(let_statement.syntax(), true), format!(" {handed_out} }};")));
            }
        }
    }
    if inserts.is_empty() {
        return unchanged();
    }
    let mut out = String::with_capacity(code.len() + inserts.len() * 24);
    let mut insertions = Vec::new();
    let mut copied = 0;
    for (at, text) in inserts {
        out.push_str(&code[copied..at]);
        copied = at;
        let line = out.matches('\n').count() + 1;
        let column = out.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        insertions.push((line, column, text.chars().count()));
        out.push_str(&text);
    }
    out.push_str(&code[copied..]);
    Annotated { code: out, insertions }
}

/// The variables a destructuring pattern binds, with whether each is `mut`.
fn bindings_of(pattern: &ast::Pat) -> Vec<(String, bool)> {
    pattern
        .syntax()
        .descendants()
        .filter_map(ast::IdentPat::cast)
        .filter_map(|ident| {
            let name = ident.name()?.text().to_string();
            is_variable_name(&name).then(|| (name, ident.mut_token().is_some()))
        })
        .collect()
}

/// An identifier in a pattern is a new variable unless it names a constant or an enum
/// variant (`None`, `MAX`), which the parser cannot tell apart; Rust's naming conventions can.
fn is_variable_name(name: &str) -> bool {
    let name = name.strip_prefix("r#").unwrap_or(name);
    name != "_" && !name.starts_with(|c: char| c.is_uppercase())
}

fn next_placeholder() -> String {
    format!("{PLACEHOLDER_PREFIX}{}", NEXT_PLACEHOLDER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders_blanked(code: &str) -> String {
        let mut out = String::new();
        let mut rest = code;
        while let Some(at) = rest.find(PLACEHOLDER_PREFIX) {
            out.push_str(&rest[..at]);
            out.push('P');
            rest = rest[at + PLACEHOLDER_PREFIX.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn a_plain_let_gets_a_placeholder_type() {
        let annotated = annotate("let t = Tensor::ones([2], FLOAT_CPU);\nlet mut n = 1;\nt");
        assert_eq!(placeholders_blanked(&annotated.code), "let t: P = Tensor::ones([2], FLOAT_CPU);\nlet mut n: P = 1;\nt");
    }

    #[test]
    fn typed_lets_constants_and_commands_are_left_alone() {
        for code in [
            "let x: i32 = 1;",
            "let None = maybe else { return };",
            ":dep rand = \"0.8\"\n1 + 1",
            "let _ = f();",
            "not rust (",
            "{ let inner = 1; }",
        ] {
            assert_eq!(annotate(code).code, code);
        }
    }

    #[test]
    fn a_destructuring_let_hands_its_variables_out_of_a_block() {
        let annotated = annotate("let (train, mut test) = split(data, 0.8);");
        assert_eq!(
            placeholders_blanked(&annotated.code),
            "let train: P; let mut test: P; (train, test) = { let (train, mut test) = split(data, 0.8); (train, test) };"
        );
        let annotated = annotate("let Some(x) = first() else { panic!() };\nx");
        assert_eq!(
            placeholders_blanked(&annotated.code),
            "let x: P; x = { let Some(x) = first() else { panic!() }; x };\nx"
        );
    }

    #[test]
    fn only_the_last_binding_of_a_name_gets_a_placeholder() {
        let annotated = annotate("let x = 1;\nlet x: String = x.to_string();\nlet y = 2;\nlet y = y + 1;");
        assert_eq!(placeholders_blanked(&annotated.code), "let x = 1;\nlet x: String = x.to_string();\nlet y = 2;\nlet y: P = y + 1;");
        let annotated = annotate("let (shown, n) = batch()?;\nlet shown: Vec<i64> = shown.into();");
        assert_eq!(
            placeholders_blanked(&annotated.code),
            "let shown; let n: P; (shown, n) = { let (shown, n) = batch()?; (shown, n) };\nlet shown: Vec<i64> = shown.into();"
        );
        let annotated = annotate("let (a, _) = pair();\nlet a = a + 1;");
        assert_eq!(placeholders_blanked(&annotated.code), "let (a, _) = pair();\nlet a: P = a + 1;");
    }

    #[test]
    fn a_type_left_partly_to_inference_is_wrapped() {
        let annotated = annotate("let v: Vec<_> = (0..3).collect();");
        assert_eq!(placeholders_blanked(&annotated.code), "let v: P; v = { let v: Vec<_> = (0..3).collect(); v };");
        // evcxr would ask rust-analyzer for each part of a typed destructuring.
        let annotated = annotate("let (a, b): (i32, String) = (1, s);");
        assert_eq!(placeholders_blanked(&annotated.code), "let a: P; let b: P; (a, b) = { let (a, b): (i32, String) = (1, s); (a, b) };");
    }

    #[test]
    fn columns_map_back_to_the_cell_as_written() {
        let annotated = annotate("let t = foo(1, 2);");
        let inserted = annotated.code.find(" = ").unwrap() - "let t".len();
        // `foo` is at column 9 as written.
        assert_eq!(annotated.original_column(1, 9 + inserted), 9);
        assert_eq!(annotated.original_column(1, 5), 5);
        // Inside the placeholder: where it was inserted.
        assert_eq!(annotated.original_column(1, 7), 6);
        assert_eq!(annotated.original_column(2, 30), 30);
    }
}
