//! Ready-made renderable values: HTML, Markdown, LaTeX, JSON, SVG, PNG and JPEG. Images also
//! carry `text/html` (an `<img>` with a data URI) because Zeppelin shows only one MIME type and
//! prefers HTML.

use crate::{MimeBundle, Render};
use base64::Engine as _;
use serde_json::{json, Value};

/// HTML shown as is: `Html("<b>hi</b>").show()`.
#[derive(Debug, Clone)]
pub struct Html<T = String>(pub T);
/// Markdown, rendered by the frontend.
#[derive(Debug, Clone)]
pub struct Markdown<T = String>(pub T);
/// LaTeX math, e.g. `Latex(r"$\sigma(x) = \frac{1}{1+e^{-x}}$")`.
#[derive(Debug, Clone)]
pub struct Latex<T = String>(pub T);
/// An SVG document; shown inline in HTML too.
#[derive(Debug, Clone)]
pub struct Svg<T = String>(pub T);
/// Any JSON value, shown as a collapsible tree in JupyterLab.
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl<T: AsRef<str>> Render for Html<T> {
    fn render(&self) -> MimeBundle {
        MimeBundle::text(strip_tags(self.0.as_ref())).with("text/html", self.0.as_ref())
    }
}

impl<T: AsRef<str>> Render for Markdown<T> {
    fn render(&self) -> MimeBundle {
        MimeBundle::text(self.0.as_ref()).with("text/markdown", self.0.as_ref())
    }
}

impl<T: AsRef<str>> Render for Latex<T> {
    fn render(&self) -> MimeBundle {
        MimeBundle::text(self.0.as_ref()).with("text/latex", self.0.as_ref())
    }
}

impl<T: AsRef<str>> Render for Svg<T> {
    fn render(&self) -> MimeBundle {
        let svg = self.0.as_ref();
        MimeBundle::text(format!("<SVG image, {} bytes>", svg.len()))
            .with("image/svg+xml", svg)
            .with("text/html", svg)
    }
}

impl Render for Json {
    fn render(&self) -> MimeBundle {
        let pretty = serde_json::to_string_pretty(&self.0).unwrap_or_default();
        MimeBundle::text(pretty).with("application/json", self.0.clone())
    }
}

/// An encoded PNG image. Build one from pixels with [`crate::Image::to_png`], or from a
/// file's bytes with [`Png::from_bytes`].
#[derive(Clone, PartialEq)]
pub struct Png {
    bytes: Vec<u8>,
    width: u32,
    height: u32,
}

impl std::fmt::Debug for Png {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Png({}×{}, {} bytes)", self.width, self.height, self.bytes.len())
    }
}

impl Png {
    /// Takes the bytes of a PNG file; fails when they are not one.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Png, crate::ImageError> {
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let reader = decoder
            .read_info()
            .map_err(|e| crate::ImageError::Decode(e.to_string()))?;
        let (width, height) = (reader.info().width, reader.info().height);
        Ok(Png { bytes, width, height })
    }

    pub(crate) fn from_parts(bytes: Vec<u8>, width: u32, height: u32) -> Png {
        Png { bytes, width, height }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// Writes the PNG file, replacing it whole (`atomic`).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        crate::atomic::write(path, &self.bytes)
    }
}

impl Render for Png {
    fn render(&self) -> MimeBundle {
        let data = self.base64();
        let size = json!({"width": self.width, "height": self.height});
        MimeBundle::text(format!("<PNG image {}×{}>", self.width, self.height))
            .with("image/png", data.clone())
            .with(
                "text/html",
                format!(
                    "<img width=\"{}\" height=\"{}\" src=\"data:image/png;base64,{data}\"/>",
                    self.width, self.height
                ),
            )
            .with_metadata("image/png", size)
    }
}

/// An encoded JPEG image (the bytes of a `.jpg` file).
#[derive(Debug, Clone, PartialEq)]
pub struct Jpeg(pub Vec<u8>);

impl Render for Jpeg {
    fn render(&self) -> MimeBundle {
        let data = base64::engine::general_purpose::STANDARD.encode(&self.0);
        MimeBundle::text(format!("<JPEG image, {} bytes>", self.0.len()))
            .with("image/jpeg", data.clone())
            .with("text/html", format!("<img src=\"data:image/jpeg;base64,{data}\"/>"))
    }
}

/// Escapes text for use inside HTML.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A rough text version of HTML for `text/plain`: tags removed, common entities decoded.
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_has_a_text_version() {
        let bundle = Html("<b>hi</b> &amp; bye").render();
        assert_eq!(bundle.text_plain(), "hi & bye");
        assert_eq!(bundle.get("text/html").unwrap(), "<b>hi</b> &amp; bye");
    }

    #[test]
    fn json_keeps_its_structure() {
        let bundle = Json(json!({"a": [1, 2]})).render();
        assert_eq!(bundle.get("application/json").unwrap()["a"][1], 2);
    }

    #[test]
    fn not_a_png_is_an_error() {
        assert!(Png::from_bytes(b"GIF89a".to_vec()).is_err());
    }
}
