//! Numeric CSV files: a header row, then one sample per row; the target column is chosen by
//! name. Targets that are all whole numbers become class ids (`Int64`), others stay `Float`.

use super::Dataset;
use crate::error::{Error, Result};
use crate::secure::IntoDataPath;
use std::path::Path;
use tch::Tensor;

/// Loads `path` with `,` as the delimiter; see [`load_csv_with`].
pub fn load_csv(path: impl IntoDataPath, target: &str) -> Result<Dataset> {
    load_csv_with(path, target, b',')
}

/// Loads a numeric CSV: every column but `target` becomes a feature `[n, columns - 1]`.
/// A row with the wrong number of fields or a value that is not a number is an error naming
/// the line and column. A file sealed with `secure::encrypted(path, &key)` is decrypted in
/// memory.
pub fn load_csv_with(path: impl IntoDataPath, target: &str, delimiter: u8) -> Result<Dataset> {
    let file = path.into_data_path();
    let text = file.read_to_string()?;
    csv_from_text(&text, target, delimiter, &file.path)
}

/// CSV text already in memory, as [`load_csv_with`] reads it; errors name "(CSV text)".
pub fn parse_csv(text: &str, target: &str, delimiter: u8) -> Result<Dataset> {
    csv_from_text(text, target, delimiter, Path::new("(CSV text)"))
}

fn csv_from_text(text: &str, target: &str, delimiter: u8, path: &Path) -> Result<Dataset> {
    if !delimiter.is_ascii() {
        return Err(Error::Usage(format!("the CSV delimiter must be one ASCII character, found byte {delimiter:#04x}")));
    }
    let sep = delimiter as char;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| Error::parse(path, Some(1), "empty file: expected a header row"))?;
    let names: Vec<&str> = header.split(sep).map(|s| s.trim().trim_matches('"')).collect();
    let target_index = names.iter().position(|n| *n == target).ok_or_else(|| {
        Error::parse(path, Some(1), format!("no column named {target:?}; the header has {names:?}"))
    })?;
    let mut features = Vec::new();
    let mut targets = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        let fields: Vec<&str> = line.split(sep).collect();
        if fields.len() != names.len() {
            return Err(Error::parse(path, Some(number), format!("expected {} fields, found {}", names.len(), fields.len())));
        }
        for (column, field) in fields.iter().enumerate() {
            let value: f64 = field.trim().trim_matches('"').parse().map_err(|_| {
                Error::parse(path, Some(number), format!("column {:?}: {:?} is not a number", names[column], field.trim()))
            })?;
            if column == target_index {
                targets.push(value);
            } else {
                features.push(value as f32);
            }
        }
    }
    let rows = targets.len() as i64;
    if rows == 0 {
        return Err(Error::parse(path, None, "no data rows after the header"));
    }
    let features = Tensor::from_slice(&features).reshape([rows, names.len() as i64 - 1]);
    let whole = targets.iter().all(|t| t.fract() == 0.0 && *t >= 0.0);
    let targets = if whole {
        Tensor::from_slice(&targets.iter().map(|t| *t as i64).collect::<Vec<_>>())
    } else {
        Tensor::from_slice(&targets.iter().map(|t| *t as f32).collect::<Vec<_>>())
    };
    Dataset::new(features, targets)
}
