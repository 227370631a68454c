//! `inspect_request` (Shift-Tab in JupyterLab): signature and docs of the item under the cursor
//! from evcxr's rust-analyzer (prelude items, std items when the `rust-src` component is
//! installed, and the session's own items), and for a session variable its type and, at
//! `detail_level` 1, a preview of its value.

use crate::wire::engine::CellOutcome;
use crate::kernel::engine::Engine;
use crate::protocol::messages::{InspectReply, InspectRequest, MimeBundle, ReplyStatus};
use crate::protocol::Content;
use serde_json::Value;

/// Longest value preview, in characters.
const PREVIEW_CHARS: usize = 600;

pub async fn inspect(engine: &Engine, request: &InspectRequest) -> Content {
    let code = &request.code;
    let cursor = code
        .char_indices()
        .nth(request.cursor_pos)
        .map_or(code.len(), |(byte, _)| byte);
    // Inspect the whole name the cursor is in, not the part before it.
    let end = code[cursor..]
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(code.len(), |i| cursor + i);
    let start = code[..end]
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let name = &code[start..end];
    let found = if name.is_empty() { Default::default() } else { engine.inspect(code, end).await };

    let mut text = Vec::new();
    let mut html = Vec::new();
    if let Some(ty) = &found.variable_type {
        text.push(format!("{name}: {ty}"));
        html.push(format!("<pre>{}: {}</pre>", escape(name), escape(ty)));
        if request.detail_level > 0 {
            let expression = format!(
                "{{ let preview = format!(\"{{:?}}\", &{name}); preview.chars().take({PREVIEW_CHARS}).collect::<String>() }}"
            );
            if let CellOutcome::Value(value) = engine.evaluate(&expression).await {
                if let Some(preview) = value.get("text/plain") {
                    let preview = preview.trim_matches('"').replace("\\n", "\n").replace("\\\"", "\"");
                    text.push(format!("value: {preview}"));
                    html.push(format!("<pre>{}</pre>", escape(&preview)));
                }
            }
        }
    }
    if let Some((plain, hover_html)) = found.hover {
        text.push(plain);
        html.push(hover_html);
    }
    let mut data = MimeBundle::new();
    if !text.is_empty() {
        data.insert("text/plain".into(), Value::String(text.join("\n\n")));
        data.insert("text/html".into(), Value::String(html.join("\n")));
    }
    Content::InspectReply(InspectReply {
        status: ReplyStatus::Ok,
        found: !data.is_empty(),
        data,
        metadata: Default::default(),
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
