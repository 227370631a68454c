//! `MimeBundle`: one output in every representation a frontend may choose from, plus metadata.

use serde_json::{Map, Value};

/// MIME type → data (strings, or JSON for `application/json` and `*+json`), and metadata
/// (for instance image sizes) keyed by MIME type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MimeBundle {
    data: Map<String, Value>,
    metadata: Map<String, Value>,
}

impl MimeBundle {
    /// A bundle with only `text/plain`, which every bundle should carry.
    pub fn text(text: impl Into<String>) -> Self {
        MimeBundle::default().with("text/plain", text.into())
    }

    /// Adds (or replaces) one representation.
    pub fn with(mut self, mime: &str, data: impl Into<Value>) -> Self {
        self.data.insert(mime.to_owned(), data.into());
        self
    }

    /// Adds metadata for one MIME type, e.g. `{"width": 320, "height": 240}` for an image.
    pub fn with_metadata(mut self, mime: &str, metadata: Value) -> Self {
        self.metadata.insert(mime.to_owned(), metadata);
        self
    }

    pub fn get(&self, mime: &str) -> Option<&Value> {
        self.data.get(mime)
    }

    /// The `text/plain` representation ("" when missing).
    pub fn text_plain(&self) -> &str {
        self.data.get("text/plain").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn mime_types(&self) -> impl Iterator<Item = &str> {
        self.data.keys().map(String::as_str)
    }

    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }

    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Adds a `text/plain` summary when the bundle has none.
    pub(crate) fn ensure_text_plain(mut self) -> Self {
        if !self.data.contains_key("text/plain") {
            let kinds: Vec<&str> = self.data.keys().map(String::as_str).collect();
            let summary = format!("<{}>", kinds.join(", "));
            self.data.insert("text/plain".to_owned(), Value::String(summary));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_plain_is_added_when_missing() {
        let bundle = MimeBundle::default().with("text/html", "<b>x</b>").ensure_text_plain();
        assert_eq!(bundle.text_plain(), "<text/html>");
        let bundle = MimeBundle::text("x").with("text/html", "<b>x</b>").ensure_text_plain();
        assert_eq!(bundle.text_plain(), "x");
    }
}
