//! Hands a cell's final value to the prelude's display code, so that evcxr compiles a value
//! cell once.
//!
//! evcxr shows a final value by first compiling `(value).evcxr_display()` and, for the many
//! types without such a method (numbers, strings, vectors, structs), compiling the whole cell
//! again with `Debug` formatting: two rustc runs and two links for `1 + 1`. In a session with
//! the prelude, the kernel rewrites the final expression into a statement that calls
//! `torchbook::cell_value`, which picks tensor summary, `Render`, the type's own
//! `evcxr_display`, or `Debug` at compile time (see `torchbook_display::cell_value`). The
//! rewrite keeps every line and everything before the expression where it was, so compiler
//! messages about the rest of the cell point at the user's code.

use ra_ap_syntax::ast::{self, AstNode, HasModuleItem};
use ra_ap_syntax::{Edition, SourceFile};

const WRAPPER_START: &str = "fn __torchbook_cell() {\n";

/// A cell whose final expression was rewritten, and how to map compiler columns back.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    pub code: String,
    /// Where the inserted prefix starts: 1-based line and character column of the expression.
    line: usize,
    column: usize,
}

const PREFIX: &str = "{ use ::torchbook::cell_value::*; (&&&CellValue(&(";
const SUFFIX: &str = "))).evcxr_display(); };";

impl Rewritten {
    /// The column in the cell as written of a compiler span at `line`, `column` (1-based) in
    /// the rewritten code: only the expression's first line moved.
    pub fn original_column(&self, line: usize, column: usize) -> usize {
        let prefix = PREFIX.chars().count();
        if line == self.line && column > self.column {
            column.saturating_sub(prefix).max(self.column)
        } else {
            column
        }
    }

    /// True when the rewrite itself failed to compile: the value has no way to be shown.
    pub fn is_about_the_value(message: &str) -> bool {
        message.contains("CellValue") || message.contains("evcxr_display")
    }
}

/// The cell with its final expression shown through `torchbook::cell_value`, or `None` when
/// there is nothing to rewrite: no final expression, or code that does not parse (evcxr
/// reports that itself). Lines of evcxr commands (`:dep …`) are left as they are.
pub fn rewrite(code: &str) -> Option<Rewritten> {
    // Commands are blanked (same length) so that the parser sees only Rust code.
    let masked: String = code
        .split_inclusive('\n')
        .map(|line| {
            if line.trim_start().starts_with(':') {
                line.chars()
                    .map(|c| if c == '\n' { c } else { ' ' })
                    .collect()
            } else {
                line.to_owned()
            }
        })
        .collect();
    let wrapped = format!("{WRAPPER_START}{masked}\n}}");
    let parsed = SourceFile::parse(&wrapped, Edition::Edition2024);
    if !parsed.errors().is_empty() {
        return None;
    }
    let ast::Item::Fn(function) = parsed.tree().items().next()? else {
        return None;
    };
    let tail = function.body()?.stmt_list()?.tail_expr()?;
    let range = tail.syntax().text_range();
    let start = usize::from(range.start()).checked_sub(WRAPPER_START.len())?;
    let end = usize::from(range.end()).checked_sub(WRAPPER_START.len())?;
    let expression = code.get(start..end)?;
    let before = &code[..start];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    Some(Rewritten {
        code: format!("{before}{PREFIX}{expression}{SUFFIX}{}", &code[end..]),
        line,
        column,
    })
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn the_final_expression_is_shown_through_the_prelude() {
        assert_eq!(
            rewrite("1 + 1").map(|r| r.code).as_deref(),
            Some("{ use ::torchbook::cell_value::*; (&&&CellValue(&(1 + 1))).evcxr_display(); };")
        );
        let rewritten = rewrite("let t = Tensor::ones([2], FLOAT);\nt.sum(Kind::Float) // total\n")
            .unwrap()
            .code;
        assert_eq!(
            rewritten,
            "let t = Tensor::ones([2], FLOAT);\n{ use ::torchbook::cell_value::*; \
             (&&&CellValue(&(t.sum(Kind::Float)))).evcxr_display(); }; // total\n"
        );
    }

    #[test]
    fn lines_before_the_expression_stay_where_they_were() {
        let code = "let a = 1;\nlet b = 2;\n\na +\n  b";
        let rewritten = rewrite(code).unwrap().code;
        assert!(rewritten.starts_with("let a = 1;\nlet b = 2;\n\n{ use"));
        assert!(rewritten.contains("(a +\n  b)"));
    }

    #[test]
    fn cells_without_a_final_value_are_left_alone() {
        assert_eq!(rewrite("let x = 1;"), None);
        assert_eq!(rewrite("println!(\"hi\");"), None);
        assert_eq!(rewrite("fn f() -> i32 { 1 }"), None);
        assert_eq!(rewrite(""), None);
    }

    #[test]
    fn commands_stay_and_broken_code_goes_to_evcxr_unchanged() {
        let rewritten = rewrite(":dep rand = \"0.8\"\nrand::random::<u8>()")
            .unwrap()
            .code;
        assert!(rewritten.starts_with(
            ":dep rand = \"0.8\"\n{ use ::torchbook::cell_value::*; (&&&CellValue(&(rand::random"
        ));
        assert_eq!(rewrite("let x = (1 + ;\nx"), None);
    }

    #[test]
    fn compiler_columns_map_back_to_the_cell() {
        let rewritten = rewrite("let a = 1;\n  a + \"x\"").unwrap();
        let prefix = super::PREFIX.chars().count();
        // `"x"` starts at column 7 of line 2 as written.
        assert_eq!(rewritten.original_column(2, 7 + prefix), 7);
        assert_eq!(
            rewritten.original_column(2, 3),
            3,
            "before the expression nothing moved"
        );
        assert_eq!(
            rewritten.original_column(1, 9),
            9,
            "other lines are unchanged"
        );
    }
}
