//! Translated message catalogues as a labelled text corpus: gettext `.mo` files hold the
//! messages of a program in one language each, so their translations, labelled by language,
//! make a language-identification data set. `make data` extracts the catalogues of the Django
//! web framework (BSD-3-Clause, translations by the Django community) from its wheel on PyPI
//! into `data_dir()/django-locale/<language>/LC_MESSAGES/*.mo`.

use super::data_file;
use crate::error::{Error, Result};
use crate::secure::IntoDataPath;

/// Texts and their language labels.
#[derive(Debug, Clone, Default)]
pub struct Catalogues {
    pub texts: Vec<String>,
    /// Index into `languages`.
    pub labels: Vec<i64>,
    pub languages: Vec<String>,
}

/// The translations (not the English originals) in one `.mo` file. Plural forms count as one
/// message each; entries with a context keep only the translation.
pub fn load_mo(path: impl IntoDataPath) -> Result<Vec<String>> {
    let file = path.into_data_path();
    let bytes = file.read()?;
    parse_mo(&bytes).map_err(|why| Error::parse(&file.path, None, format!("not a gettext .mo file: {why}")))
}

/// The translations in a `.mo` file's bytes, as [`load_mo`] reads them.
pub fn parse_mo(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let read = |at: usize, little: bool| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    let little = match read(0, true) {
        Some(0x9504_12de) => true,
        Some(0xde12_0495) => false,
        _ => return Err("wrong magic number".into()),
    };
    let field = |at: usize| read(at, little).ok_or("truncated header").map(|v| v as usize);
    let (count, translations) = (field(8)?, field(16)?);
    // The count comes from the file: each entry needs 8 bytes of table, so a count beyond that
    // is a damaged file, not a reason to reserve gigabytes.
    if count > bytes.len() / 8 {
        return Err(format!("the header claims {count} messages, more than a file of {} bytes can hold", bytes.len()));
    }
    let mut messages = Vec::with_capacity(count);
    // Entries may share bytes: without a bound, n bytes of file could expand to ~n²/8 bytes
    // of messages (found by fuzzing). Real catalogues never overlap their translations.
    let mut total = 0usize;
    for i in 0..count {
        let entry = translations + i * 8;
        let (length, offset) = (field(entry)?, field(entry + 4)?);
        total += length;
        if total > bytes.len() {
            return Err("the messages add up to more than the file (entries share their bytes)".into());
        }
        let raw = bytes.get(offset..offset + length).ok_or("a message points outside the file")?;
        let text = String::from_utf8_lossy(raw);
        for form in text.split('\0').filter(|f| !f.is_empty()) {
            messages.push(form.to_owned());
        }
    }
    // The first entry (empty msgid) is the catalogue's header, not a message.
    if messages.first().is_some_and(|m| m.contains("Content-Type:")) {
        messages.remove(0);
    }
    Ok(messages)
}

/// Messages of at least `min_chars` characters for each of `languages` (e.g. `["de", "fr"]`),
/// from every catalogue under `data_dir()/django-locale/<language>/LC_MESSAGES/`. Duplicates
/// within a language are dropped.
pub fn message_catalogues(languages: &[&str], min_chars: usize) -> Result<Catalogues> {
    let root = data_file("django-locale")?;
    let mut corpus = Catalogues {
        languages: languages.iter().map(|l| l.to_string()).collect(),
        ..Default::default()
    };
    for (label, language) in languages.iter().enumerate() {
        let dir = root.join(language).join("LC_MESSAGES");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut seen = std::collections::HashSet::new();
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "mo")).collect();
        files.sort();
        for file in files {
            for message in load_mo(&file)? {
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                if message.chars().count() >= min_chars && seen.insert(message.clone()) {
                    corpus.texts.push(message);
                    corpus.labels.push(label as i64);
                }
            }
        }
    }
    Ok(corpus)
}
