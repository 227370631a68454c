//! `complete_request` through evcxr's analyser, and `is_complete_request`.
//!
//! Jupyter counts `cursor_pos` in Unicode code points; evcxr works in bytes. Both directions are
//! converted here.

use crate::engine::Engine;
use crate::protocol::messages::{CompleteReply, CompleteRequest, IsCompleteReply, ReplyStatus};
use crate::protocol::Content;

fn byte_offset(code: &str, code_points: usize) -> usize {
    code.char_indices()
        .nth(code_points)
        .map(|(byte, _)| byte)
        .unwrap_or(code.len())
}

fn code_points(code: &str, byte: usize) -> usize {
    code.get(..byte).map(|s| s.chars().count()).unwrap_or(code.chars().count())
}

pub async fn complete(engine: &Engine, request: &CompleteRequest) -> Content {
    let byte_pos = byte_offset(&request.code, request.cursor_pos);
    let found = engine.complete(&request.code, byte_pos).await;
    Content::CompleteReply(CompleteReply {
        status: ReplyStatus::Ok,
        matches: found.matches,
        cursor_start: code_points(&request.code, found.start.min(byte_pos)),
        cursor_end: code_points(&request.code, found.end.max(byte_pos)),
        metadata: Default::default(),
    })
}

/// The spec's answer for a kernel that cannot yet tell: `unknown`, so frontends fall back to
/// their own rule (run on Shift+Enter). A real Rust parser answers here in the protocol issue.
pub fn is_complete() -> Content {
    Content::IsCompleteReply(IsCompleteReply {
        status: "unknown".to_owned(),
        indent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_with_unicode() {
        let code = "let é = 1; é.";
        let bytes = byte_offset(code, 13);
        assert_eq!(bytes, code.len());
        assert_eq!(code_points(code, bytes), 13);
        assert_eq!(byte_offset(code, 5), 6);
    }
}
