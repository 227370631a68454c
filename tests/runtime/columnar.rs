//! Parquet and Arrow IPC (Feather v2) files written by pyarrow — as pandas and Spark write them —
//! read into datasets and tables: types, snappy and LZ4 compression, several row groups, list
//! columns, text targets, nulls (an error naming column and row, or filled), and bad files.
//! pyarrow comes from the project venv: `TORCHBOOK_TEST_PYTHON` (set by the Makefile).

use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Kind;
use torchbook::data::{load_feather, load_feather_with, load_parquet, load_parquet_with, read_feather, read_parquet, Columns};
use torchbook::table::Column;

/// Runs `script` with pyarrow imported as `pa`/`pq`/`feather` and `out` the folder to write in.
fn pyarrow(out: &Path, script: &str) {
    let python = std::env::var("TORCHBOOK_TEST_PYTHON")
        .expect("TORCHBOOK_TEST_PYTHON must name a Python with pyarrow (make test-rust sets it to the project venv's)");
    let program = format!(
        "import pyarrow as pa, pyarrow.parquet as pq, pyarrow.feather as feather, sys\nout = sys.argv[1]\n{script}"
    );
    let status = Command::new(python).arg("-c").arg(program).arg(out).status().expect("run python");
    assert!(status.success(), "pyarrow script failed: {script}");
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("torchbook-columnar-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TYPED_TABLE: &str = r#"
t = pa.table({
    "i8": pa.array([1, -2, 3, 4], pa.int8()),
    "u16": pa.array([10, 20, 30, 40], pa.uint16()),
    "f16": pa.array([0.5, 1.5, 2.5, 3.5], pa.float16()),
    "f64": pa.array([0.25, 0.5, 0.75, 1.0], pa.float64()),
    "flag": pa.array([True, False, True, False]),
    "pixels": pa.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]], pa.list_(pa.uint8(), 3)),
    "name": pa.array(["cat", "dog", "cat", "bird"]),
    "label": pa.array([2, 0, 1, 2], pa.int32()),
    "score": pa.array([0.1, 0.2, 0.3, 0.4], pa.float32()),
})
"#;

#[test]
fn parquet_from_pyarrow_snappy_in_row_groups_with_every_type() {
    let dir = folder("types");
    pyarrow(&dir, &format!("{TYPED_TABLE}\npq.write_table(t, out + '/t.parquet', compression='snappy', row_group_size=3)\n"));
    let path = dir.join("t.parquet");
    let data = load_parquet(&path, &["i8", "u16", "f16", "f64", "flag", "pixels"], "label").unwrap();
    assert_eq!(data.features.size(), [4, 8], "five scalar columns and a list of three");
    assert_eq!(data.features.kind(), Kind::Float);
    let row: Vec<f32> = Vec::try_from(data.features.get(1)).unwrap();
    assert_eq!(row, [-2.0, 20.0, 1.5, 0.5, 0.0, 4.0, 5.0, 6.0]);
    let last: Vec<f32> = Vec::try_from(data.features.get(3)).unwrap();
    assert_eq!(last, [4.0, 40.0, 3.5, 1.0, 0.0, 10.0, 11.0, 12.0], "the second row group");
    assert_eq!(data.targets.kind(), Kind::Int64, "integer targets are class ids");
    assert_eq!(Vec::<i64>::try_from(&data.targets).unwrap(), [2, 0, 1, 2]);
    // A float target stays float; a text target becomes ids in sorted order of the names.
    let regression = load_parquet(&path, &["f64"], "score").unwrap();
    assert_eq!(regression.targets.kind(), Kind::Float);
    let named = load_parquet(&path, &["i8"], "name").unwrap();
    assert_eq!(Vec::<i64>::try_from(&named.targets).unwrap(), [1, 2, 1, 0], "bird, cat, dog");
    // No feature names: every column but the target — text is not a feature.
    let err = load_parquet(&path, &[], "label").unwrap_err().to_string();
    assert!(err.contains("column \"name\" is Utf8") && err.contains("features must be numbers"), "{err}");
    let err = load_parquet(&path, &["nope"], "label").unwrap_err().to_string();
    assert!(err.contains("no column named \"nope\"") && err.contains("\"pixels\""), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn feather_uncompressed_and_lz4_and_a_table_to_look_at() {
    let dir = folder("feather");
    pyarrow(
        &dir,
        &format!(
            "{TYPED_TABLE}\nfeather.write_feather(t, out + '/lz4.feather', compression='lz4')\n\
             feather.write_feather(t, out + '/plain.feather', compression='uncompressed')\n\
             pq.write_table(pa.table({{'a': pa.array(['x', 'y']).dictionary_encode(), 'b': [1, 2]}}), out + '/dict.parquet')\n"
        ),
    );
    for file in ["lz4.feather", "plain.feather"] {
        let data = load_feather(dir.join(file), &["u16", "pixels"], "label").unwrap();
        assert_eq!(data.features.size(), [4, 4], "{file}");
        assert_eq!(Vec::<f32>::try_from(data.features.get(2)).unwrap(), [30.0, 7.0, 8.0, 9.0], "{file}");
    }
    let table = read_feather(dir.join("lz4.feather")).unwrap();
    assert_eq!(table.num_rows(), 4);
    assert_eq!(table.get("label"), Some(&Column::Int(vec![2, 0, 1, 2])));
    assert_eq!(table.get("name"), Some(&Column::Text(vec!["cat".into(), "dog".into(), "cat".into(), "bird".into()])));
    assert_eq!(table.get("pixels"), Some(&Column::Text(vec!["[3 values]".into(); 4])));
    let dictionary = read_parquet(dir.join("dict.parquet")).unwrap();
    assert_eq!(dictionary.get("a"), Some(&Column::Text(vec!["x".into(), "y".into()])));
    let by_name = load_parquet(dir.join("dict.parquet"), &["b"], "a").unwrap();
    assert_eq!(Vec::<i64>::try_from(&by_name.targets).unwrap(), [0, 1]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn nulls_are_an_error_naming_column_and_row_unless_filled() {
    let dir = folder("nulls");
    pyarrow(
        &dir,
        "t = pa.table({'x': [1.0, 2.0, None, 4.0], 'y': [0, 1, 0, None], 'v': pa.array([[1, 2], None, [5, 6], [7, 8]])})\n\
         pq.write_table(t, out + '/n.parquet', compression='snappy', row_group_size=2)\n",
    );
    let path = dir.join("n.parquet");
    let err = load_parquet(&path, &["x"], "y").unwrap_err().to_string();
    assert!(err.contains("column \"x\", row 2") && err.contains("null") && err.contains("n.parquet"), "{err}");
    let err = load_parquet(&path, &["v"], "y").unwrap_err().to_string();
    assert!(err.contains("column \"v\", row 1"), "{err}");
    let filled = load_parquet_with(&path, &Columns::new(&["x", "v"], "y").fill_nulls(-1.0)).unwrap();
    assert_eq!(Vec::<f32>::try_from(filled.features.flatten(0, -1)).unwrap(), [1.0, 1.0, 2.0, 2.0, -1.0, -1.0, -1.0, 5.0, 6.0, 4.0, 7.0, 8.0]);
    assert_eq!(Vec::<i64>::try_from(&filled.targets).unwrap(), [0, 1, 0, -1]);
    let table = read_parquet(&path).unwrap();
    match table.get("y") {
        Some(Column::Float(v)) => assert!(v[3].is_nan() && v[1] == 1.0, "{v:?}"),
        other => panic!("a column with nulls shows as floats with NaN: {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_that_is_not_parquet_or_arrow_is_a_clear_error() {
    let dir = folder("bad");
    let path = dir.join("bad.parquet");
    std::fs::write(&path, b"label,x\n1,2\n").unwrap();
    let err = load_parquet(&path, &["x"], "label").unwrap_err().to_string();
    assert!(err.contains("bad.parquet") && err.contains("not a readable Parquet file"), "{err}");
    let err = load_feather_with(&path, &Columns::new(&["x"], "label")).unwrap_err().to_string();
    assert!(err.contains("not a readable Arrow IPC"), "{err}");
    let err = load_parquet(dir.join("missing.parquet"), &["x"], "label").unwrap_err().to_string();
    assert!(err.contains("missing.parquet"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
