//! What the service knows about its model: the per-example input shape and dtype requests are
//! checked against, and whether the traced graph takes any batch size. It comes from the
//! sidecar `Model::export_torchscript` writes beside the `.pt` (`<file>.json`, whose SHA-256
//! must match the file, so a stale sidecar is refused), or from `--input-shape`/`--input-dtype`
//! for a TorchScript file made elsewhere (e.g. `torch.jit.save` in Python).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::Kind;

/// The sidecar format this service reads (`torchbook::export::SIDECAR_FORMAT`).
pub const SIDECAR_FORMAT: &str = "torchbook-torchscript/1";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: expected {expected}, found {found}")]
    Sidecar { path: PathBuf, expected: String, found: String },
    #[error(
        "{model}: no sidecar {sidecar} (written by Model::export_torchscript) and no --input-shape: \
         pass --input-shape (per example, e.g. 1,28,28) and --input-dtype"
    )]
    Missing { model: PathBuf, sidecar: PathBuf },
    #[error("{0}")]
    Usage(String),
}

/// The input a model takes, per example (without the batch dimension).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub input_shape: Vec<i64>,
    pub input_kind: Kind,
    pub output_shape: Option<Vec<i64>>,
    /// `None`: any batch size; `Some(n)`: the graph only takes batches of exactly `n` (traced
    /// with a layer that reshapes by the batch size), which the batcher pads to.
    pub fixed_batch: Option<i64>,
}

impl ModelSpec {
    /// The spec for `model`: from the flags when given, else from its sidecar.
    pub fn resolve(model: &Path, input_shape: Option<&str>, input_dtype: Option<&str>) -> Result<ModelSpec, SpecError> {
        if let Some(shape) = input_shape {
            let input_shape = parse_shape(shape).map_err(SpecError::Usage)?;
            let dtype = input_dtype.unwrap_or("float32");
            let input_kind = kind_of(dtype).ok_or_else(|| SpecError::Usage(format!("--input-dtype: expected one of {}, found {dtype:?}", DTYPES.join(", "))))?;
            return Ok(ModelSpec { input_shape, input_kind, output_shape: None, fixed_batch: None });
        }
        if input_dtype.is_some() {
            return Err(SpecError::Usage("--input-dtype needs --input-shape".into()));
        }
        let sidecar = sidecar_path(model);
        let text = match std::fs::read_to_string(&sidecar) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpecError::Missing { model: model.to_path_buf(), sidecar })
            }
            Err(source) => return Err(SpecError::Io { path: sidecar, source }),
        };
        let bytes = std::fs::read(model).map_err(|source| SpecError::Io { path: model.to_path_buf(), source })?;
        Self::from_sidecar(&sidecar, &text, &bytes)
    }

    /// Parses a sidecar and checks it describes `model_bytes`.
    pub fn from_sidecar(path: &Path, text: &str, model_bytes: &[u8]) -> Result<ModelSpec, SpecError> {
        let bad = |expected: &str, found: String| SpecError::Sidecar { path: path.to_path_buf(), expected: expected.into(), found };
        let meta: serde_json::Value = serde_json::from_str(text).map_err(|e| bad("JSON", e.to_string()))?;
        let format = meta["format"].as_str().unwrap_or("nothing");
        if format != SIDECAR_FORMAT {
            return Err(bad(&format!("\"format\": {SIDECAR_FORMAT:?}"), format!("{format:?}")));
        }
        let digest: String = Sha256::digest(model_bytes).iter().map(|b| format!("{b:02x}")).collect();
        let recorded = meta["model_sha256"].as_str().unwrap_or("nothing");
        if recorded != digest {
            return Err(bad(
                &format!("the SHA-256 of the model file ({digest})"),
                format!("{recorded}: the sidecar belongs to another export of this file (export again)"),
            ));
        }
        let dims = |key: &str| -> Result<Vec<i64>, SpecError> {
            meta[key]
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_i64().filter(|&d| d >= 0)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad(&format!("{key:?}: a list of sizes"), meta[key].to_string()))
        };
        let input_shape = dims("input_shape")?;
        let dtype = meta["input_dtype"].as_str().unwrap_or("nothing");
        let input_kind = kind_of(dtype).ok_or_else(|| bad(&format!("\"input_dtype\": one of {}", DTYPES.join(", ")), format!("{dtype:?}")))?;
        let fixed_batch = match meta["dynamic_batch"].as_bool() {
            Some(false) => Some(meta["example_batch"].as_i64().filter(|&n| n >= 1).ok_or_else(|| bad("\"example_batch\" ≥ 1", meta["example_batch"].to_string()))?),
            _ => None,
        };
        Ok(ModelSpec { input_shape, input_kind, output_shape: dims("output_shape").ok(), fixed_batch })
    }

    /// `[batch, …]` as messages show it.
    pub fn describe_input(&self) -> String {
        format!("[batch, {}] {}", join(&self.input_shape), dtype_name(self.input_kind))
    }

    pub fn example_numel(&self) -> usize {
        self.input_shape.iter().product::<i64>() as usize
    }
}

pub fn sidecar_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The dtypes requests may carry (numpy's names).
pub const DTYPES: [&str; 7] = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8"];

pub fn kind_of(name: &str) -> Option<Kind> {
    Some(match name {
        "float32" => Kind::Float,
        "float64" => Kind::Double,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "int64" => Kind::Int64,
        "int32" => Kind::Int,
        "uint8" => Kind::Uint8,
        _ => return None,
    })
}

pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        _ => "unsupported",
    }
}

/// `"4,1,28,28"` → `[4, 1, 28, 28]` (spaces allowed; `""` is a scalar's `[]`).
pub fn parse_shape(text: &str) -> Result<Vec<i64>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|d| d.trim().parse::<i64>().ok().filter(|&d| d >= 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("expected sizes separated by commas (e.g. 4,1,28,28), found {text:?}"))
}

pub fn join(dims: &[i64]) -> String {
    dims.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDECAR: &str = r#"{"format": "torchbook-torchscript/1", "model_sha256": "SHA", "input_shape": [1, 28, 28],
        "input_dtype": "float32", "output_shape": [10], "dynamic_batch": true, "example_batch": 4}"#;

    fn sidecar_for(bytes: &[u8], text: &str) -> String {
        let digest: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        text.replace("SHA", &digest)
    }

    #[test]
    fn a_sidecar_gives_the_input_and_must_match_the_file() {
        let spec = ModelSpec::from_sidecar(Path::new("m.pt.json"), &sidecar_for(b"model", SIDECAR), b"model").unwrap();
        assert_eq!(spec.input_shape, [1, 28, 28]);
        assert_eq!(spec.input_kind, Kind::Float);
        assert_eq!(spec.fixed_batch, None);
        assert_eq!(spec.describe_input(), "[batch, 1, 28, 28] float32");
        let err = ModelSpec::from_sidecar(Path::new("m.pt.json"), &sidecar_for(b"model", SIDECAR), b"other").unwrap_err();
        assert!(err.to_string().contains("belongs to another export"), "{err}");
        let fixed = sidecar_for(b"m", &SIDECAR.replace("\"dynamic_batch\": true", "\"dynamic_batch\": false"));
        assert_eq!(ModelSpec::from_sidecar(Path::new("x"), &fixed, b"m").unwrap().fixed_batch, Some(4));
        let err = ModelSpec::from_sidecar(Path::new("x"), &sidecar_for(b"m", &SIDECAR.replace("float32", "complex")), b"m").unwrap_err();
        assert!(err.to_string().contains("expected \"input_dtype\": one of float32"), "{err}");
    }

    #[test]
    fn shapes_parse_or_say_what_was_expected() {
        assert_eq!(parse_shape("4, 1,28,28").unwrap(), [4, 1, 28, 28]);
        assert_eq!(parse_shape("").unwrap(), Vec::<i64>::new());
        assert!(parse_shape("4,x").unwrap_err().contains("expected sizes separated by commas"));
        assert!(parse_shape("-1").is_err());
    }
}
