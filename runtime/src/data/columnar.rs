//! Columnar files as data pipelines write them: Parquet (Spark's and pandas' default format,
//! uncompressed or snappy-compressed) and Arrow IPC files (Feather v2, uncompressed or LZ4),
//! into a [`Dataset`] by column name or into a [`Table`] to look at. A file sealed with
//! `secure::encrypted(path, &key)` is decrypted in memory.
//!
//! Types: integer, float and boolean columns are numbers; a fixed-size or variable list of
//! numbers (an image or an embedding per row) gives one feature per element, the same count in
//! every row; text and dictionary-encoded text are class names when they are the target
//! (ids in sorted order of the names) and an error as features. A null is an error naming the
//! column and the row, unless [`Columns::fill_nulls`] says what to put in its place.

use super::Dataset;
use crate::error::{Error, Result};
use crate::secure::IntoDataPath;
use crate::table::{Column, Table};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use std::path::Path;
use tch::Tensor;

/// Which columns make the features and the target, and what to do with nulls.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// Feature columns in order; empty: every column but the target.
    pub features: Vec<String>,
    pub target: String,
    /// `None`: a null is an error; `Some(v)`: nulls become `v`.
    pub fill_nulls: Option<f64>,
}

impl Columns {
    pub fn new(features: &[&str], target: &str) -> Columns {
        Columns { features: features.iter().map(|s| s.to_string()).collect(), target: target.into(), fill_nulls: None }
    }

    /// Nulls (in features or target) become `value` instead of an error.
    pub fn fill_nulls(mut self, value: f64) -> Columns {
        self.fill_nulls = Some(value);
        self
    }
}

/// A Parquet file's `features` columns (all but `target` when empty) and its `target` column.
pub fn load_parquet(path: impl IntoDataPath, features: &[&str], target: &str) -> Result<Dataset> {
    load_parquet_with(path, &Columns::new(features, target))
}

/// A Parquet file into a `Dataset`, as [`Columns`] says.
pub fn load_parquet_with(path: impl IntoDataPath, columns: &Columns) -> Result<Dataset> {
    let file = path.into_data_path();
    let (schema, batches) = read_parquet_batches(file.read()?, &file.path)?;
    dataset(&schema, &batches, columns, &file.path)
}

/// An Arrow IPC file (Feather v2) into a `Dataset`; see [`load_parquet`].
pub fn load_feather(path: impl IntoDataPath, features: &[&str], target: &str) -> Result<Dataset> {
    load_feather_with(path, &Columns::new(features, target))
}

/// An Arrow IPC file (Feather v2) into a `Dataset`, as [`Columns`] says.
pub fn load_feather_with(path: impl IntoDataPath, columns: &Columns) -> Result<Dataset> {
    let file = path.into_data_path();
    let (schema, batches) = read_ipc_batches(file.read()?, &file.path)?;
    dataset(&schema, &batches, columns, &file.path)
}

/// Every column of a Parquet file as a [`Table`] (nulls: NaN in numbers, empty text; lists
/// shown by their length).
pub fn read_parquet(path: impl IntoDataPath) -> Result<Table> {
    let file = path.into_data_path();
    let (schema, batches) = read_parquet_batches(file.read()?, &file.path)?;
    table(&schema, &batches, &file.path)
}

/// Every column of an Arrow IPC file (Feather v2) as a [`Table`]; see [`read_parquet`].
pub fn read_feather(path: impl IntoDataPath) -> Result<Table> {
    let file = path.into_data_path();
    let (schema, batches) = read_ipc_batches(file.read()?, &file.path)?;
    table(&schema, &batches, &file.path)
}

fn read_parquet_batches(bytes: Vec<u8>, path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |e: &dyn std::fmt::Display| Error::parse(path, None, format!("not a readable Parquet file: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).map_err(|e| bad(&e))?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(8192).build().map_err(|e| bad(&e))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    Ok((schema, batches))
}

fn read_ipc_batches(bytes: Vec<u8>, path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::parse(path, None, format!("not a readable Arrow IPC (Feather v2) file: {e}"))
    };
    let reader = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| bad(&e))?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    Ok((schema, batches))
}

/// One column's values across every batch, as numbers: `width` values per row (1 for a
/// scalar column), `None` for a null.
struct Numbers {
    values: Vec<Option<f64>>,
    width: usize,
}

fn dataset(schema: &SchemaRef, batches: &[RecordBatch], columns: &Columns, path: &Path) -> Result<Dataset> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let index_of = |name: &str| {
        names.iter().position(|n| *n == name).ok_or_else(|| {
            Error::parse(path, None, format!("no column named {name:?}; the file has {names:?}"))
        })
    };
    let target_index = index_of(&columns.target)?;
    let feature_indices: Vec<usize> = if columns.features.is_empty() {
        (0..names.len()).filter(|&i| i != target_index).collect()
    } else {
        columns.features.iter().map(|f| index_of(f)).collect::<Result<_>>()?
    };
    if feature_indices.is_empty() {
        return Err(Error::parse(path, None, "no feature columns: the file has only the target column"));
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows == 0 {
        return Err(Error::parse(path, None, "no rows"));
    }
    let mut features: Vec<Numbers> = Vec::with_capacity(feature_indices.len());
    for &i in &feature_indices {
        let arrays: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
        let numbers = numbers(&arrays, names[i], path)?.ok_or_else(|| {
            Error::parse(path, None, format!(
                "column {:?} is {}: features must be numbers, booleans or lists of numbers",
                names[i],
                schema.field(i).data_type()
            ))
        })?;
        features.push(numbers);
    }
    let width: usize = features.iter().map(|f| f.width).sum();
    let mut flat = vec![0f32; rows * width];
    let mut offset = 0;
    for (numbers, &i) in features.iter().zip(&feature_indices) {
        for row in 0..rows {
            for k in 0..numbers.width {
                let value = filled(numbers.values[row * numbers.width + k], columns, names[i], row, path)?;
                flat[row * width + offset + k] = value as f32;
            }
        }
        offset += numbers.width;
    }
    let features = Tensor::from_slice(&flat).reshape([rows as i64, width as i64]);
    let target_arrays: Vec<&ArrayRef> = batches.iter().map(|b| b.column(target_index)).collect();
    let target_type = schema.field(target_index).data_type();
    let targets = match numbers(&target_arrays, &columns.target, path)? {
        Some(numbers) if numbers.width == 1 => {
            let values: Vec<f64> = (0..rows).map(|row| filled(numbers.values[row], columns, &columns.target, row, path)).collect::<Result<_>>()?;
            if is_integer(target_type) {
                Tensor::from_slice(&values.iter().map(|v| *v as i64).collect::<Vec<_>>())
            } else {
                Tensor::from_slice(&values.iter().map(|v| *v as f32).collect::<Vec<_>>())
            }
        }
        Some(_) => return Err(Error::parse(path, None, format!("target column {:?} holds lists: expected one value per row", columns.target))),
        None => {
            let texts = texts(&target_arrays).ok_or_else(|| {
                Error::parse(path, None, format!("target column {:?} is {target_type}: expected numbers or text", columns.target))
            })?;
            let mut classes: Vec<&str> = Vec::new();
            for (row, text) in texts.iter().enumerate() {
                match text {
                    Some(t) => classes.push(t),
                    None => return Err(null_error(&columns.target, row, path, "text target nulls cannot be filled with a number")),
                }
            }
            let mut names = classes.clone();
            names.sort_unstable();
            names.dedup();
            let ids: Vec<i64> = classes.iter().map(|c| names.binary_search(c).unwrap_or(0) as i64).collect();
            Tensor::from_slice(&ids)
        }
    };
    Dataset::new(features, targets)
}

fn filled(value: Option<f64>, columns: &Columns, name: &str, row: usize, path: &Path) -> Result<f64> {
    match (value, columns.fill_nulls) {
        (Some(v), _) => Ok(v),
        (None, Some(fill)) => Ok(fill),
        (None, None) => Err(null_error(name, row, path, "fill them with Columns::new(..).fill_nulls(value)")),
    }
}

fn null_error(name: &str, row: usize, path: &Path, hint: &str) -> Error {
    Error::parse(path, None, format!("column {name:?}, row {row} (counting from 0): null value; {hint}"))
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Boolean)
}

/// A column's numbers, or `None` when it does not hold numbers.
fn numbers(arrays: &[&ArrayRef], name: &str, path: &Path) -> Result<Option<Numbers>> {
    let mut values = Vec::new();
    let mut width = None;
    for array in arrays {
        let (mut chunk, chunk_width) = match array.data_type() {
            DataType::FixedSizeList(_, _) | DataType::List(_) | DataType::LargeList(_) => match list_numbers(array.as_ref(), name, path)? {
                Some(found) => found,
                None => return Ok(None),
            },
            _ => match scalar_numbers(array.as_ref()) {
                Some(found) => (found, 1),
                None => return Ok(None),
            },
        };
        if array.len() > 0 {
            match width {
                Some(w) if w != chunk_width => {
                    return Err(Error::parse(path, None, format!("column {name:?}: lists of {w} and of {chunk_width} values; every row needs the same length")));
                }
                _ => width = Some(chunk_width),
            }
        }
        values.append(&mut chunk);
    }
    Ok(Some(Numbers { values, width: width.unwrap_or(1) }))
}

/// Elements of a list column, row by row, with the common length; a null list is `width`
/// nulls.
fn list_numbers(array: &dyn Array, name: &str, path: &Path) -> Result<Option<(Vec<Option<f64>>, usize)>> {
    let rows: Vec<Option<ArrayRef>> = match array.data_type() {
        DataType::FixedSizeList(_, _) => array.as_fixed_size_list().iter().collect(),
        DataType::List(_) => array.as_list::<i32>().iter().collect(),
        _ => array.as_list::<i64>().iter().collect(),
    };
    let width = rows.iter().flatten().map(|r| r.len()).next().unwrap_or(0);
    let mut values = Vec::with_capacity(rows.len() * width);
    for (row, list) in rows.iter().enumerate() {
        match list {
            Some(list) => {
                if list.len() != width {
                    return Err(Error::parse(path, None, format!("column {name:?}, row {row}: a list of {} values, expected {width} like the first row", list.len())));
                }
                match scalar_numbers(list.as_ref()) {
                    Some(mut found) => values.append(&mut found),
                    None => return Ok(None),
                }
            }
            None => values.extend(std::iter::repeat_n(None, width)),
        }
    }
    Ok(Some((values, width)))
}

fn scalar_numbers(array: &dyn Array) -> Option<Vec<Option<f64>>> {
    macro_rules! primitive {
        ($t:ty) => {
            array.as_primitive::<$t>().iter().map(|v| v.map(|v| v as f64)).collect()
        };
    }
    Some(match array.data_type() {
        DataType::Int8 => primitive!(Int8Type),
        DataType::Int16 => primitive!(Int16Type),
        DataType::Int32 => primitive!(Int32Type),
        DataType::Int64 => primitive!(Int64Type),
        DataType::UInt8 => primitive!(UInt8Type),
        DataType::UInt16 => primitive!(UInt16Type),
        DataType::UInt32 => primitive!(UInt32Type),
        DataType::UInt64 => primitive!(UInt64Type),
        DataType::Float16 => array.as_primitive::<Float16Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::Float32 => primitive!(Float32Type),
        DataType::Float64 => primitive!(Float64Type),
        DataType::Boolean => array.as_boolean().iter().map(|v| v.map(|b| b as u8 as f64)).collect(),
        _ => return None,
    })
}

/// A text (or dictionary-encoded text) column's values across batches.
fn texts(arrays: &[&ArrayRef]) -> Option<Vec<Option<String>>> {
    let mut out = Vec::new();
    for array in arrays {
        match array.data_type() {
            DataType::Utf8 => out.extend(array.as_string::<i32>().iter().map(|v| v.map(str::to_owned))),
            DataType::LargeUtf8 => out.extend(array.as_string::<i64>().iter().map(|v| v.map(str::to_owned))),
            DataType::Utf8View => out.extend(array.as_string_view().iter().map(|v| v.map(str::to_owned))),
            DataType::Dictionary(_, value) if matches!(value.as_ref(), DataType::Utf8 | DataType::LargeUtf8) => {
                let dictionary = array.as_any_dictionary();
                let values = texts(&[dictionary.values()])?;
                let keys = dictionary.normalized_keys();
                for (row, key) in keys.iter().enumerate() {
                    out.push(if array.is_null(row) { None } else { values.get(*key).cloned().flatten() });
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

fn table(schema: &SchemaRef, batches: &[RecordBatch], path: &Path) -> Result<Table> {
    let mut table = Table::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
        let column = match field.data_type() {
            DataType::FixedSizeList(_, _) | DataType::List(_) | DataType::LargeList(_) => {
                let lengths = arrays.iter().flat_map(|a| (0..a.len()).map(|row| list_length(a.as_ref(), row)));
                Column::Text(lengths.map(|n| n.map(|n| format!("[{n} values]")).unwrap_or_default()).collect())
            }
            t => match (numbers(&arrays, field.name(), path)?, texts(&arrays)) {
                (Some(n), _) if is_integer(t) && n.values.iter().all(Option::is_some) => Column::Int(n.values.iter().map(|v| v.unwrap_or_default() as i64).collect()),
                (Some(n), _) => Column::Float(n.values.iter().map(|v| v.unwrap_or(f64::NAN)).collect()),
                (None, Some(texts)) => Column::Text(texts.into_iter().map(Option::unwrap_or_default).collect()),
                (None, None) => Column::Text(arrays.iter().flat_map(|a| (0..a.len()).map(|_| format!("({t})"))).collect()),
            },
        };
        table = table.column(field.name(), column)?;
    }
    Ok(table)
}

fn list_length(array: &dyn Array, row: usize) -> Option<usize> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::FixedSizeList(_, n) => *n as usize,
        DataType::List(_) => array.as_list::<i32>().value_length(row) as usize,
        _ => array.as_list::<i64>().value_length(row) as usize,
    })
}
