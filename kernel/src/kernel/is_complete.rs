//! `is_complete_request`: would this cell run as typed, or does it need more lines? Decided with
//! rustc's own lexer (strings, comments and brackets as Rust sees them) and rust-analyzer's
//! parser (the same crates evcxr uses), not by counting characters.

use ra_ap_rustc_lexer::{tokenize, FrontmatterAllowed, LiteralKind, TokenKind};
use ra_ap_syntax::{Edition, SourceFile};

/// The answer, with the indent to continue with when incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    Incomplete { indent: String },
    Invalid,
}

fn unterminated(kind: &TokenKind) -> bool {
    match kind {
        TokenKind::BlockComment { terminated, .. } => !terminated,
        TokenKind::Literal { kind, .. } => match kind {
            LiteralKind::Str { terminated }
            | LiteralKind::ByteStr { terminated }
            | LiteralKind::CStr { terminated } => !terminated,
            LiteralKind::RawStr { n_hashes } | LiteralKind::RawByteStr { n_hashes } | LiteralKind::RawCStr { n_hashes } => {
                n_hashes.is_none()
            }
            _ => false,
        },
        _ => false,
    }
}

/// A token after which a statement cannot end (`let x =`, `a +`, `v.`).
fn continues(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::Eq
            | TokenKind::Plus
            | TokenKind::Minus
            | TokenKind::Star
            | TokenKind::Slash
            | TokenKind::Percent
            | TokenKind::Caret
            | TokenKind::And
            | TokenKind::Or
            | TokenKind::Dot
            | TokenKind::Comma
            | TokenKind::Colon
            | TokenKind::Bang
            | TokenKind::Lt
    )
}

pub fn check(code: &str) -> Completeness {
    let trimmed = code.trim();
    // evcxr commands (`:dep …`, `:vars`) are one line each and always runnable.
    if trimmed.is_empty() || trimmed.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with(':')) {
        return Completeness::Complete;
    }
    let mut open: Vec<TokenKind> = Vec::new();
    let mut last = None;
    for token in tokenize(code, FrontmatterAllowed::No) {
        let kind = token.kind;
        if unterminated(&kind) {
            return Completeness::Incomplete { indent: String::new() };
        }
        match kind {
            TokenKind::Whitespace | TokenKind::LineComment { .. } | TokenKind::BlockComment { .. } => continue,
            TokenKind::OpenParen | TokenKind::OpenBrace | TokenKind::OpenBracket => open.push(kind),
            TokenKind::CloseParen | TokenKind::CloseBrace | TokenKind::CloseBracket => {
                let expected = match kind {
                    TokenKind::CloseParen => TokenKind::OpenParen,
                    TokenKind::CloseBrace => TokenKind::OpenBrace,
                    _ => TokenKind::OpenBracket,
                };
                if open.pop() != Some(expected) {
                    return Completeness::Invalid;
                }
            }
            TokenKind::Unknown | TokenKind::InvalidIdent => return Completeness::Invalid,
            _ => {}
        }
        last = Some(kind);
    }
    if !open.is_empty() {
        return Completeness::Incomplete { indent: "    ".repeat(open.len()) };
    }
    if last.as_ref().is_some_and(continues) {
        return Completeness::Incomplete { indent: String::new() };
    }
    // Balanced and not dangling: let the parser judge it as the body of a function, which is
    // what evcxr makes of a cell (statements, items and a final expression).
    let wrapped = format!("fn __torchbook_cell() {{\n{code}\n}}");
    if SourceFile::parse(&wrapped, Edition::Edition2024).errors().is_empty() {
        Completeness::Complete
    } else {
        Completeness::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incomplete(code: &str) -> bool {
        matches!(check(code), Completeness::Incomplete { .. })
    }

    #[test]
    fn complete_cells() {
        for code in ["1 + 1", "let x = 1;", "fn f() {}", "struct P { x: i32 }\nP { x: 1 }", ":dep rand = \"0.8\"", "", "let s = \"}\";"] {
            assert_eq!(check(code), Completeness::Complete, "{code:?}");
        }
    }

    #[test]
    fn incomplete_cells() {
        for code in ["fn f() {", "let s = \"abc", "let v = vec![1,", "let x =", "a +", "/* comment", "let r = r#\"raw"] {
            assert!(incomplete(code), "{code:?} gave {:?}", check(code));
        }
        assert_eq!(check("fn f() {\n    if x {"), Completeness::Incomplete { indent: "        ".into() });
    }

    #[test]
    fn invalid_cells() {
        for code in ["let = ;)", "fn f() { ]", "let = 5;", "let x = 1 + ;"] {
            assert_eq!(check(code), Completeness::Invalid, "{code:?}");
        }
    }
}
