//! A notebook's final figures as JSON, for the checks that run the example notebooks (and for
//! anyone comparing runs): `report::save("02-image-classification", &[("test_accuracy", acc)])`
//! writes `$TORCHBOOK_METRICS_DIR/<name>.json` (default `build/metrics/` under the kernel's
//! working folder).

use crate::error::{Error, Result};
use std::path::PathBuf;

/// Writes `{"name": value, …}` and returns the file's path.
pub fn save(name: &str, metrics: &[(&str, f64)]) -> Result<PathBuf> {
    let dir = std::env::var_os("TORCHBOOK_METRICS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("build/metrics"));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let body: Vec<String> = metrics
        .iter()
        .map(|(k, v)| {
            let value = if v.is_finite() { v.to_string() } else { "null".to_owned() };
            format!("  {:?}: {value}", k)
        })
        .collect();
    let path = dir.join(format!("{name}.json"));
    torchbook_display::atomic::write(&path, format!("{{\n{}\n}}\n", body.join(",\n"))).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
