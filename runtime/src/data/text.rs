//! Labelled text: either one file with `label<TAB>text` per line, or a folder per class with
//! one example per file. Tokenising into tensors is the job of a vocabulary (`text::Vocab`).

use crate::error::{Error, Result};
use crate::secure::{DataPath, IntoDataPath};
use std::collections::BTreeMap;

/// Texts with class ids; `classes[id]` is the label's name.
#[derive(Debug, Clone, Default)]
pub struct TextDataset {
    pub texts: Vec<String>,
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut ids = BTreeMap::new();
        for (label, _) in &pairs {
            ids.entry(label.clone()).or_insert(0);
        }
        let classes: Vec<String> = ids.keys().cloned().collect();
        for (i, name) in classes.iter().enumerate() {
            ids.insert(name.clone(), i as i64);
        }
        let (labels, texts) = pairs.into_iter().map(|(l, t)| (ids[&l], t)).unzip();
        TextDataset { texts, labels, classes }
    }
}

/// One example per line: `label<TAB>text`. Empty lines are skipped; a line without a tab is an
/// error naming its line number.
/// A sealed file (`secure::encrypted(path, &key)`) is decrypted in memory.
pub fn load_text_lines(path: impl IntoDataPath) -> Result<TextDataset> {
    let file = path.into_data_path();
    let content = file.read_to_string()?;
    let path = file.path.as_path();
    let mut pairs = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (label, text) = line
            .split_once('\t')
            .ok_or_else(|| Error::parse(path, Some(i + 1), "expected `label<TAB>text`"))?;
        if label.trim().is_empty() {
            return Err(Error::parse(path, Some(i + 1), "empty label"));
        }
        pairs.push((label.trim().to_owned(), text.to_owned()));
    }
    if pairs.is_empty() {
        return Err(Error::parse(path, None, "no examples"));
    }
    Ok(TextDataset::from_pairs(pairs))
}

/// A folder per class, each file one example (`root/positive/001.txt`, …). Files that are not
/// UTF-8 are an error naming the file. With `secure::encrypted(root, &key)`, every file is
/// sealed and decrypted in memory.
pub fn load_text_folder(root: impl IntoDataPath) -> Result<TextDataset> {
    let root = root.into_data_path();
    let sealed = root.key.clone();
    let root = root.path.as_path();
    let mut pairs = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let label = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut files: Vec<_> = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            let text = DataPath { path: file, key: sealed.clone() }.read_to_string()?;
            pairs.push((label.clone(), text.trim().to_owned()));
        }
    }
    if pairs.is_empty() {
        return Err(Error::parse(root, None, "no class folders with text files"));
    }
    Ok(TextDataset::from_pairs(pairs))
}
