//! The `text/plain` a bundle carries when the cell gave only richer types: what a person can
//! read in a frontend that shows text alone (Zeppelin's text fallback, a terminal client, a
//! notebook diff). HTML becomes its text content; other types a short placeholder.

use serde_json::Value;

/// A readable `text/plain` for a bundle that has none, from its richest readable member.
pub fn fallback(bundle: &[(&str, &Value)]) -> String {
    if let Some((_, Value::String(html))) = bundle.iter().find(|(mime, _)| *mime == "text/html") {
        let text = html_text(html);
        if !text.is_empty() {
            return text;
        }
    }
    if let Some((_, Value::String(text))) = bundle.iter().find(|(mime, _)| *mime == "text/markdown" || *mime == "text/latex") {
        return text.trim().to_owned();
    }
    let kinds: Vec<&str> = bundle.iter().map(|(mime, _)| *mime).collect();
    format!("<{}>", kinds.join(", "))
}

/// The text content of an HTML fragment: tags dropped (and what `<script>` and `<style>` hold),
/// block ends and `<br>` as line breaks, table cells separated by tabs, character references
/// decoded, runs of blanks collapsed.
pub fn html_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        push_text(&mut out, &rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            push_text(&mut out, &rest[open..]);
            rest = "";
            break;
        };
        let tag = after[..close].trim().to_ascii_lowercase();
        rest = &after[close + 1..];
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if !tag.starts_with('/') && (name == "script" || name == "style") {
            let end = format!("</{name}");
            rest = match rest.to_ascii_lowercase().find(&end) {
                Some(at) => rest[at..].find('>').map_or("", |gt| &rest[at + gt + 1..]),
                None => "",
            };
            continue;
        }
        match name.as_str() {
            "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "pre" | "table"
            | "ul" | "ol" | "caption" | "thead" | "tbody" => newline(&mut out),
            "td" | "th" if tag.starts_with('/') => out.push('\t'),
            _ => {}
        }
    }
    push_text(&mut out, rest);
    out.lines().map(|l| l.trim_matches([' ', '\t'])).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

fn newline(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Appends text between tags: whitespace collapsed to one space, references decoded.
fn push_text(out: &mut String, text: &str) {
    let decoded = decode_references(text);
    for c in decoded.chars() {
        if c.is_whitespace() && c != '\u{a0}' {
            if !out.is_empty() && !out.ends_with([' ', '\n', '\t']) {
                out.push(' ');
            }
        } else if c == '\u{a0}' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
}

fn decode_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => match name.strip_prefix('#') {
                    Some(hex) if hex.starts_with(['x', 'X']) => u32::from_str_radix(&hex[1..], 16).ok().and_then(char::from_u32),
                    Some(dec) => dec.parse().ok().and_then(char::from_u32),
                    None => None,
                },
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_its_text() {
        assert_eq!(html_text("<i>n0</i>"), "n0");
        assert_eq!(html_text("<b>a &amp; b</b> &lt;3 &#x41;&#66;"), "a & b <3 AB");
        assert_eq!(html_text("<style>p{color:red}</style><p>one</p><p>two<br>three</p>"), "one\ntwo\nthree");
        assert_eq!(
            html_text("<table><tr><th>x</th><th>y</th></tr><tr><td>1</td><td>2</td></tr></table>"),
            "x\ty\n1\t2"
        );
        assert_eq!(html_text("a < b & c"), "a < b & c", "stray markup characters stay");
        assert_eq!(html_text("<script>alert('<p>')</script>ok"), "ok");
    }

    #[test]
    fn other_types_get_a_placeholder() {
        let png = Value::String("AAAA".into());
        assert_eq!(fallback(&[("image/png", &png)]), "<image/png>");
        let empty_html = Value::String("<div></div>".into());
        assert_eq!(fallback(&[("text/html", &empty_html), ("image/png", &png)]), "<text/html, image/png>");
    }
}
