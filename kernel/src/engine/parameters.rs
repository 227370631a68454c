//! Notebook parameters injected by papermill. The `papermill-torchbook` translator writes the
//! injected cell as `:param NAME = VALUE` lines (VALUE in JSON, plus `NaN`, `Infinity` and
//! `-Infinity`), because papermill hands a translator only the values, never the notebook: the
//! engine knows what the cell tagged `parameters` declared (evcxr's variables and their types)
//! and turns each line into a `let` of that type, so `let epochs: usize = 5;` stays a `usize`
//! when papermill passes 3. A parameter the notebook never declared, or a value that does not
//! fit the declared type, is a [`ParameterError`] naming both, before anything is compiled.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A value as papermill passed it (Python's int, float, bool, str, list and None).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Value>),
}

/// One `:param` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub value: Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParameterError {
    #[error("line {line} of the injected parameters: {message}")]
    Syntax { line: usize, message: String },
    #[error(
        "papermill passed the parameter `{name}`, which this notebook does not declare: declare it in the \
         cell tagged `parameters` (e.g. `let {name}: f64 = 0.0;`){}",
        declared_list(.declared)
    )]
    Undeclared { name: String, declared: Vec<String> },
    #[error("parameter `{name}` is declared as `{declared_type}`, but papermill passed {found}")]
    Mismatch { name: String, declared_type: String, found: String },
}

fn declared_list(declared: &[String]) -> String {
    if declared.is_empty() {
        return String::new();
    }
    format!("; the notebook declares {}", declared.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
}

/// Whether `code` is an injected parameters cell: `:param` lines, with comments and blank lines
/// around them, and nothing else.
pub fn is_parameter_cell(code: &str) -> bool {
    let mut any = false;
    for line in code.lines().map(str::trim) {
        if line.starts_with(":param ") {
            any = true;
        } else if !(line.is_empty() || line.starts_with("//")) {
            return false;
        }
    }
    any
}

/// The `:param` lines of `code`, in order.
pub fn parse(code: &str) -> Result<Vec<Parameter>, ParameterError> {
    let mut parameters = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix(":param ") else { continue };
        let syntax = |message: String| ParameterError::Syntax { line: index + 1, message };
        let (name, value) = rest.split_once('=').ok_or_else(|| syntax("expected `:param NAME = VALUE`".into()))?;
        let name = name.trim();
        let is_identifier = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !is_identifier {
            return Err(syntax(format!("`{name}` is not a Rust identifier")));
        }
        let mut reader = Reader { text: value.trim(), at: 0 };
        let value = reader.value().map_err(syntax)?;
        if reader.at != reader.text.len() {
            return Err(syntax(format!("unexpected `{}` after the value", &reader.text[reader.at..])));
        }
        parameters.push(Parameter { name: name.to_owned(), value });
    }
    Ok(parameters)
}

/// The Rust that binds each parameter with the type `types` (variable name → type, as evcxr
/// reports them) declares for it.
pub fn to_rust(parameters: &[Parameter], types: &HashMap<String, String>) -> Result<String, ParameterError> {
    let mut code = String::new();
    for Parameter { name, value } in parameters {
        let Some(declared_type) = types.get(name) else {
            let mut declared: Vec<String> = types.keys().cloned().collect();
            declared.sort();
            return Err(ParameterError::Undeclared { name: name.clone(), declared });
        };
        let literal = literal(value, declared_type).map_err(|found| ParameterError::Mismatch {
            name: name.clone(),
            declared_type: declared_type.clone(),
            found,
        })?;
        // evcxr may spell std's types through the crates that define them, which a cell
        // cannot name without `extern crate`.
        let rust_type = declared_type.replace("alloc::", "std::").replace("core::", "std::");
        let _ = writeln!(code, "let {name}: {rust_type} = {literal};");
    }
    Ok(code)
}

/// `value` as a Rust expression of type `ty`, or what was found instead (for the error).
fn literal(value: &Value, ty: &str) -> Result<String, String> {
    let ty = ty.trim();
    let mismatch = || Err(describe(value));
    if let Some(inner) = generic_argument(ty, "Option") {
        return match value {
            Value::None => Ok("None".into()),
            other => Ok(format!("Some({})", literal(other, inner)?)),
        };
    }
    if let Some(inner) = generic_argument(ty, "Vec") {
        let Value::List(items) = value else { return mismatch() };
        let items: Result<Vec<String>, String> = items.iter().map(|item| literal(item, inner)).collect();
        return Ok(format!("vec![{}]", items?.join(", ")));
    }
    match (strip_path(ty), value) {
        ("bool", Value::Bool(b)) => Ok(b.to_string()),
        (int @ ("i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize"), value) => {
            let n = match value {
                Value::Int(n) => *n,
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e38 => *f as i128,
                _ => return mismatch(),
            };
            let (min, max) = integer_range(int);
            if n < min || n > max {
                return Err(format!("{n}, which does not fit in a `{int}`"));
            }
            Ok(n.to_string())
        }
        (float @ ("f32" | "f64"), Value::Float(f)) => Ok(if f.is_nan() {
            format!("{float}::NAN")
        } else if f.is_infinite() {
            format!("{float}::{}", if *f > 0.0 { "INFINITY" } else { "NEG_INFINITY" })
        } else {
            format!("{f:?}")
        }),
        ("f32" | "f64", Value::Int(n)) => Ok(format!("{n}.0")),
        ("String", Value::Str(s)) => Ok(format!("String::from({s:?})")),
        ("&str" | "&'static str", Value::Str(s)) => Ok(format!("{s:?}")),
        ("PathBuf", Value::Str(s)) => Ok(format!("std::path::PathBuf::from({s:?})")),
        ("char", Value::Str(s)) if s.chars().count() == 1 => Ok(format!("{:?}", s.chars().next().unwrap())),
        (known, _) if is_supported(known) => mismatch(),
        _ => Err(format!(
            "{} (papermill's values fill integers, floats, bool, String, &str, PathBuf, char, Vec<…> and Option<…>)",
            describe(value)
        )),
    }
}

fn is_supported(ty: &str) -> bool {
    ["bool", "f32", "f64", "String", "&str", "&'static str", "PathBuf", "char"].contains(&ty) || integer_range(ty) != (0, 0)
}

fn integer_range(ty: &str) -> (i128, i128) {
    match ty {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        "i128" | "u128" => (if ty == "u128" { 0 } else { i128::MIN }, i128::MAX),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        _ => (0, 0),
    }
}

/// `T` from `Name<T>` (with or without a module path before `Name`).
fn generic_argument<'a>(ty: &'a str, name: &str) -> Option<&'a str> {
    let open = ty.find('<')?;
    (strip_path(&ty[..open]) == name && ty.ends_with('>')).then(|| ty[open + 1..ty.len() - 1].trim())
}

/// `String` from `alloc::string::String` or `std::string::String`, and so on.
fn strip_path(ty: &str) -> &str {
    if ty.starts_with('&') {
        return ty;
    }
    ty.rsplit("::").next().unwrap_or(ty)
}

fn describe(value: &Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => format!("the bool {}", if *b { "True" } else { "False" }),
        Value::Int(n) => format!("the integer {n}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Str(s) => format!("the string {s:?}"),
        Value::List(items) => format!("a list of {} items", items.len()),
    }
}

/// A reader for JSON values with `NaN`, `Infinity` and `-Infinity`, as Python's `json.dumps`
/// writes them. Objects are not parameters papermill can pass to Rust: they are an error.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn keyword(&mut self, word: &str) -> bool {
        let matched = self.rest().starts_with(word);
        if matched {
            self.at += word.len();
        }
        matched
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        let value = if self.keyword("null") || self.keyword("None") {
            Value::None
        } else if self.keyword("true") {
            Value::Bool(true)
        } else if self.keyword("false") {
            Value::Bool(false)
        } else if self.keyword("NaN") {
            Value::Float(f64::NAN)
        } else if self.keyword("Infinity") {
            Value::Float(f64::INFINITY)
        } else if self.keyword("-Infinity") {
            Value::Float(f64::NEG_INFINITY)
        } else if self.rest().starts_with('"') {
            Value::Str(self.string()?)
        } else if self.keyword("[") {
            self.list()?
        } else if self.rest().starts_with('{') {
            return Err("a dict cannot be a Rust parameter: pass its fields as parameters of their own".into());
        } else {
            self.number()?
        };
        self.skip_space();
        Ok(value)
    }

    fn string(&mut self) -> Result<String, String> {
        let bytes = self.rest().as_bytes();
        let mut end = 1;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        if end >= bytes.len() {
            return Err("a string without its closing quote".into());
        }
        let token = &self.rest()[..=end];
        let decoded = serde_json::from_str::<String>(token).map_err(|e| format!("bad string {token}: {e}"))?;
        self.at += token.len();
        Ok(decoded)
    }

    fn list(&mut self) -> Result<Value, String> {
        let mut items = Vec::new();
        self.skip_space();
        if self.keyword("]") {
            return Ok(Value::List(items));
        }
        loop {
            items.push(self.value()?);
            if self.keyword("]") {
                return Ok(Value::List(items));
            }
            if !self.keyword(",") {
                return Err("expected `,` or `]` in a list".into());
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let length = self.rest().find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c))).unwrap_or(self.rest().len());
        let token = &self.rest()[..length];
        if token.is_empty() {
            return Err(format!("expected a value, found `{}`", self.rest()));
        }
        let value = if token.contains(['.', 'e', 'E']) {
            Value::Float(token.parse().map_err(|_| format!("`{token}` is not a number"))?)
        } else {
            Value::Int(token.parse().map_err(|_| format!("`{token}` is not an integer that fits in 128 bits"))?)
        };
        self.at += length;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
    }

    fn bind(code: &str, declared: &[(&str, &str)]) -> Result<String, ParameterError> {
        to_rust(&parse(code)?, &types(declared))
    }

    #[test]
    fn recognises_injected_cells_only() {
        assert!(is_parameter_cell("// Parameters\n:param epochs = 3\n"));
        assert!(!is_parameter_cell("// Parameters\n"));
        assert!(!is_parameter_cell(":param epochs = 3\nlet x = 1;"));
    }

    #[test]
    fn values_take_the_declared_types() {
        let code = ":param epochs = 3\n:param lr = 0.001\n:param ratio = NaN\n:param top = -Infinity\n:param name = \"it's \\\"ok\\\" ✓\\n\"\n\
                    :param sizes = [1, 2, 3]\n:param mask = null\n:param limit = 7\n:param shuffle = true\n:param scale = 2";
        let declared = [
            ("epochs", "usize"), ("lr", "f32"), ("ratio", "f64"), ("top", "f64"), ("name", "alloc::string::String"),
            ("sizes", "Vec<i64>"), ("mask", "Option<f64>"), ("limit", "std::option::Option<u8>"), ("shuffle", "bool"), ("scale", "f64"),
        ];
        assert_eq!(
            bind(code, &declared).unwrap(),
            "let epochs: usize = 3;\nlet lr: f32 = 0.001;\nlet ratio: f64 = f64::NAN;\nlet top: f64 = f64::NEG_INFINITY;\n\
             let name: std::string::String = String::from(\"it's \\\"ok\\\" ✓\\n\");\nlet sizes: Vec<i64> = vec![1, 2, 3];\n\
             let mask: Option<f64> = None;\nlet limit: std::option::Option<u8> = Some(7);\nlet shuffle: bool = true;\nlet scale: f64 = 2.0;\n"
        );
    }

    #[test]
    fn strings_for_str_paths_and_chars() {
        let code = ":param a = \"x\"\n:param p = \"/data/train.csv\"\n:param c = \"é\"\n:param empty = []";
        let declared = [("a", "&str"), ("p", "std::path::PathBuf"), ("c", "char"), ("empty", "Vec<String>")];
        assert_eq!(
            bind(code, &declared).unwrap(),
            "let a: &str = \"x\";\nlet p: std::path::PathBuf = std::path::PathBuf::from(\"/data/train.csv\");\nlet c: char = 'é';\nlet empty: Vec<String> = vec![];\n"
        );
    }

    #[test]
    fn undeclared_parameters_name_the_declared_ones() {
        let error = bind(":param lr2 = 0.1", &[("lr", "f64"), ("epochs", "usize")]).unwrap_err();
        assert_eq!(error, ParameterError::Undeclared { name: "lr2".into(), declared: vec!["epochs".into(), "lr".into()] });
        assert!(error.to_string().contains("does not declare") && error.to_string().contains("`epochs`, `lr`"), "{error}");
    }

    #[test]
    fn values_that_do_not_fit_say_what_was_expected_and_found() {
        let mismatch = |code: &str, ty: &str| bind(code, &[("x", ty)]).unwrap_err().to_string();
        assert_eq!(mismatch(":param x = \"abc\"", "usize"), "parameter `x` is declared as `usize`, but papermill passed the string \"abc\"");
        assert!(mismatch(":param x = -1", "usize").contains("-1, which does not fit in a `usize`"));
        assert!(mismatch(":param x = 300", "u8").contains("does not fit"));
        assert!(mismatch(":param x = 2.5", "i32").contains("the float 2.5"));
        assert!(mismatch(":param x = [1, \"a\"]", "Vec<i32>").contains("the string \"a\""));
        assert!(mismatch(":param x = 1", "HashMap<String, i32>").contains("Vec<…> and Option<…>"));
        assert!(mismatch(":param x = 1", "bool").contains("the integer 1"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert!(matches!(parse("// c\n:param = 3"), Err(ParameterError::Syntax { line: 2, .. })));
        assert!(matches!(parse(":param x = [1, 2"), Err(ParameterError::Syntax { line: 1, .. })));
        assert!(matches!(parse(":param x = \"open"), Err(ParameterError::Syntax { .. })));
        assert!(matches!(parse(":param x = {\"a\": 1}"), Err(ParameterError::Syntax { .. })));
        assert!(matches!(parse(":param x = 1 2"), Err(ParameterError::Syntax { .. })));
        assert!(matches!(parse(":param 9x = 1"), Err(ParameterError::Syntax { .. })));
    }

    #[test]
    fn big_and_nested_values() {
        let parsed = parse(":param n = 18446744073709551615\n:param m = [[1.5], []]").unwrap();
        assert_eq!(parsed[0].value, Value::Int(u64::MAX.into()));
        assert_eq!(parsed[1].value, Value::List(vec![Value::List(vec![Value::Float(1.5)]), Value::List(vec![])]));
        assert_eq!(bind(":param n = 18446744073709551615", &[("n", "u64")]).unwrap(), "let n: u64 = 18446744073709551615;\n");
    }
}
