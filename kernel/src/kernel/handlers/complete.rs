//! `complete_request` through evcxr's analyser, and the reply to `is_complete_request`.
//!
//! Jupyter counts `cursor_pos` in Unicode code points; evcxr works in bytes. Both directions are
//! converted here.

use crate::kernel::engine::Engine;
use crate::protocol::messages::{CompleteReply, CompleteRequest, IsCompleteReply, ReplyStatus};
use crate::kernel::is_complete::Completeness;
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

/// Whether the cell can run as typed (see `is_complete.rs`).
pub fn is_complete(code: &str) -> Content {
    let (status, indent) = match crate::kernel::is_complete::check(code) {
        Completeness::Complete => ("complete", None),
        Completeness::Incomplete { indent } => ("incomplete", Some(indent)),
        Completeness::Invalid => ("invalid", None),
    };
    Content::IsCompleteReply(IsCompleteReply {
        status: status.to_owned(),
        indent,
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
