//! The notebook file `torchbook run` executes: nbformat 4 JSON kept as it was read (metadata,
//! attachments and fields this module does not know survive), code cells' sources, tags, outputs
//! and execution counts, and papermill-style parameter injection.

use serde_json::{json, Map, Value};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error("cannot read the notebook {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a notebook: {reason}")]
    Format { path: String, reason: String },
    #[error("cannot write the executed notebook {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// A parameter given on the command line (`-p NAME VALUE` or `-r NAME VALUE`).
#[derive(Debug, Clone, PartialEq)]
pub struct CliParameter {
    pub name: String,
    /// The value as JSON, the form of the engine's `:param` lines.
    pub json: String,
}

impl CliParameter {
    /// `-p`: the value's type as papermill infers it (`True`/`False`, `None`, integers, floats,
    /// `nan`/`inf`, JSON lists), else a string.
    pub fn inferred(name: &str, value: &str) -> CliParameter {
        let trimmed = value.trim();
        let json = match trimmed {
            "True" | "true" => "true".to_owned(),
            "False" | "false" => "false".to_owned(),
            "None" | "null" => "null".to_owned(),
            "nan" | "NaN" => "NaN".to_owned(),
            "inf" | "Infinity" | "+inf" => "Infinity".to_owned(),
            "-inf" | "-Infinity" => "-Infinity".to_owned(),
            _ if trimmed.parse::<i128>().is_ok() => trimmed.to_owned(),
            _ if trimmed.parse::<f64>().is_ok_and(f64::is_finite) => {
                let number: f64 = trimmed.parse().expect("checked");
                serde_json::to_string(&number).expect("finite")
            }
            _ if trimmed.starts_with('[') && serde_json::from_str::<Vec<Value>>(trimmed).is_ok() => trimmed.to_owned(),
            _ => Value::String(value.to_owned()).to_string(),
        };
        CliParameter { name: name.to_owned(), json }
    }

    /// `-r`: always a string.
    pub fn raw(name: &str, value: &str) -> CliParameter {
        CliParameter { name: name.to_owned(), json: Value::String(value.to_owned()).to_string() }
    }
}

/// An nbformat 4 notebook.
#[derive(Debug, Clone)]
pub struct Notebook {
    json: Value,
}

impl Notebook {
    pub fn read(path: &Path) -> Result<Notebook, NotebookError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| NotebookError::Read { path: path.display().to_string(), source })?;
        Notebook::parse(&text).map_err(|reason| NotebookError::Format { path: path.display().to_string(), reason })
    }

    pub fn parse(text: &str) -> Result<Notebook, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON ({e})"))?;
        match json.get("nbformat").and_then(Value::as_u64) {
            Some(4) => {}
            Some(other) => return Err(format!("nbformat {other}; expected 4 (convert it with `jupyter nbconvert --to notebook`)")),
            None => return Err("no `nbformat` field".into()),
        }
        let cells = json.get("cells").and_then(Value::as_array).ok_or("no `cells` list")?;
        for (i, cell) in cells.iter().enumerate() {
            let kind = cell.get("cell_type").and_then(Value::as_str);
            if kind.is_none() {
                return Err(format!("cell {} has no `cell_type`", i + 1));
            }
            match cell.get("source") {
                Some(Value::String(_)) => {}
                Some(Value::Array(lines)) if lines.iter().all(Value::is_string) => {}
                _ => return Err(format!("cell {} has no `source` text", i + 1)),
            }
        }
        Ok(Notebook { json })
    }

    fn cells(&self) -> &Vec<Value> {
        self.json["cells"].as_array().expect("checked by parse")
    }

    fn cells_mut(&mut self) -> &mut Vec<Value> {
        self.json["cells"].as_array_mut().expect("checked by parse")
    }

    pub fn len(&self) -> usize {
        self.cells().len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells().is_empty()
    }

    pub fn is_code(&self, index: usize) -> bool {
        self.cells()[index]["cell_type"] == "code"
    }

    pub fn source(&self, index: usize) -> String {
        match &self.cells()[index]["source"] {
            Value::String(text) => text.clone(),
            Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
            _ => String::new(),
        }
    }

    pub fn tags(&self, index: usize) -> Vec<String> {
        self.cells()[index]["metadata"]["tags"]
            .as_array()
            .map(|tags| tags.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Inserts papermill's `injected-parameters` cell after the cell tagged `parameters` (at
    /// the top when there is none, where the engine then reports the parameters as undeclared).
    /// An earlier injected cell is replaced, as papermill does.
    pub fn inject_parameters(&mut self, parameters: &[CliParameter]) {
        if parameters.is_empty() {
            return;
        }
        let mut source = String::from("// Parameters (torchbook run)\n");
        for parameter in parameters {
            source.push_str(&format!(":param {} = {}\n", parameter.name, parameter.json));
        }
        let cell = json!({
            "cell_type": "code",
            "execution_count": null,
            "metadata": {"tags": ["injected-parameters"]},
            "outputs": [],
            "source": source,
        });
        if let Some(old) = (0..self.len()).find(|&i| self.tags(i).iter().any(|t| t == "injected-parameters")) {
            self.cells_mut()[old] = cell;
            return;
        }
        let at = (0..self.len()).find(|&i| self.tags(i).iter().any(|t| t == "parameters")).map_or(0, |i| i + 1);
        self.cells_mut().insert(at, cell);
    }

    /// Clears every code cell's outputs and count (a cell that does not run shows nothing).
    pub fn clear_outputs(&mut self) {
        for cell in self.cells_mut() {
            if cell["cell_type"] == "code" {
                cell["outputs"] = json!([]);
                cell["execution_count"] = Value::Null;
            }
        }
    }

    pub fn set_result(&mut self, index: usize, execution_count: u64, outputs: Vec<Value>) {
        let cell = &mut self.cells_mut()[index];
        cell["execution_count"] = json!(execution_count);
        cell["outputs"] = Value::Array(outputs);
    }

    /// Records how the run went in the notebook's metadata (`metadata.torchbook_run`).
    pub fn set_run_metadata(&mut self, metadata: Map<String, Value>) {
        if !self.json["metadata"].is_object() {
            self.json["metadata"] = json!({});
        }
        self.json["metadata"]["torchbook_run"] = Value::Object(metadata);
    }

    /// Writes through a temporary file and a rename, so a reader never sees half a notebook.
    pub fn write(&self, path: &Path) -> Result<(), NotebookError> {
        let error = |source| NotebookError::Write { path: path.display().to_string(), source };
        let mut text = serde_json::to_string_pretty(&self.json).map_err(|e| error(std::io::Error::other(e)))?;
        text.push('\n');
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        std::fs::write(&temp, text).map_err(error)?;
        std::fs::rename(&temp, path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            error(e)
        })
    }

    pub fn to_value(&self) -> &Value {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notebook(cells: Value) -> Notebook {
        Notebook::parse(&json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}).to_string()).unwrap()
    }

    #[test]
    fn parameters_are_typed_as_papermill_types_them() {
        let json = |v: &str| CliParameter::inferred("x", v).json;
        assert_eq!(json("3"), "3");
        assert_eq!(json("-2.5"), "-2.5");
        assert_eq!(json("1e-3"), "0.001");
        assert_eq!(json("True"), "true");
        assert_eq!(json("None"), "null");
        assert_eq!(json("nan"), "NaN");
        assert_eq!(json("-inf"), "-Infinity");
        assert_eq!(json("[1, 2]"), "[1, 2]");
        assert_eq!(json("adam"), "\"adam\"");
        assert_eq!(json("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(CliParameter::raw("x", "3").json, "\"3\"");
    }

    #[test]
    fn injected_cell_follows_the_parameters_cell_and_replaces_an_old_one() {
        let mut nb = notebook(json!([
            {"cell_type": "markdown", "metadata": {}, "source": "# t"},
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": null, "source": ["let epochs: usize = 5;\n"]},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": null, "source": "epochs"},
        ]));
        nb.inject_parameters(&[CliParameter::inferred("epochs", "2")]);
        assert_eq!(nb.len(), 4);
        assert_eq!(nb.tags(2), ["injected-parameters"]);
        assert!(nb.source(2).contains(":param epochs = 2\n"), "{}", nb.source(2));
        nb.inject_parameters(&[CliParameter::inferred("epochs", "7")]);
        assert_eq!(nb.len(), 4);
        assert!(nb.source(2).contains(":param epochs = 7\n"));
        assert_eq!(nb.source(1), "let epochs: usize = 5;\n");
    }

    #[test]
    fn broken_notebooks_are_refused_with_the_reason() {
        assert!(Notebook::parse("{").unwrap_err().contains("invalid JSON"));
        assert!(Notebook::parse(r#"{"nbformat": 3, "worksheets": []}"#).unwrap_err().contains("nbformat 3"));
        assert!(Notebook::parse(r#"{"nbformat": 4}"#).unwrap_err().contains("cells"));
        let no_source = json!({"nbformat": 4, "cells": [{"cell_type": "code"}]}).to_string();
        assert!(Notebook::parse(&no_source).unwrap_err().contains("cell 1"));
    }
}
