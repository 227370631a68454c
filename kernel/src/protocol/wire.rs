//! The multipart wire format: `[identities…, <IDS|MSG>, signature, header, parent_header, metadata,
//! content, buffers…]`, and its HMAC-SHA256 signature. Decoding never panics: every malformed
//! message becomes a [`WireError`] that the channel logs before it carries on.

use super::messages::{Content, Header, Message};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};

const DELIMITER: &[u8] = b"<IDS|MSG>";

/// How many recent signatures are remembered to refuse replays. jupyter_client keeps a similar
/// bounded set; a replay older than this window is indistinguishable from a new message.
const REPLAY_WINDOW: usize = 8192;

/// Why a multipart message was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter among {0} frames")]
    MissingDelimiter(usize),
    #[error("expected at least 5 frames after the delimiter, found {0}")]
    TooFewFrames(usize),
    #[error("signature does not match")]
    BadSignature,
    #[error("signature was already seen (replayed message)")]
    Replayed,
    #[error("{frame} is not UTF-8")]
    NotUtf8 { frame: &'static str },
    #[error("{frame} is not valid JSON: {message}")]
    BadJson {
        frame: &'static str,
        message: String,
    },
}

/// Signs and verifies messages with the connection file's key; an empty key disables signing.
pub struct Signer {
    mac: Option<Hmac<Sha256>>,
    seen: HashSet<Vec<u8>>,
    seen_order: VecDeque<Vec<u8>>,
}

impl Signer {
    pub fn new(key: &str) -> Self {
        let mac = (!key.is_empty())
            .then(|| Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key"));
        Signer {
            mac,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    fn mac_of(&self, parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
        let mut mac = self.mac.clone()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac)
    }

    /// The hex signature of the four signed frames ("" when signing is off).
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        match self.mac_of(parts) {
            Some(mac) => hex::encode(mac.finalize().into_bytes()),
            None => String::new(),
        }
    }

    /// Checks a signature in constant time and refuses one seen before.
    pub fn verify(&mut self, signature: &[u8], parts: &[&[u8]]) -> Result<(), WireError> {
        let Some(mac) = self.mac_of(parts) else {
            return Ok(());
        };
        let raw = hex::decode(signature).map_err(|_| WireError::BadSignature)?;
        mac.verify_slice(&raw).map_err(|_| WireError::BadSignature)?;
        if !self.seen.insert(raw.clone()) {
            return Err(WireError::Replayed);
        }
        self.seen_order.push_back(raw);
        if self.seen_order.len() > REPLAY_WINDOW {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
    }
}

/// A message as it travels: the routing identities plus the decoded message.
#[derive(Debug, Clone)]
pub struct WireMessage {
    pub identities: Vec<Bytes>,
    pub message: Message,
}

fn json_frame(frame: &'static str, bytes: &[u8]) -> Result<serde_json::Value, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8 { frame })?;
    serde_json::from_str(text).map_err(|e| WireError::BadJson {
        frame,
        message: e.to_string(),
    })
}

impl WireMessage {
    /// Decodes and verifies the frames of one received message.
    pub fn decode(frames: Vec<Bytes>, signer: &mut Signer) -> Result<Self, WireError> {
        let delimiter = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::MissingDelimiter(frames.len()))?;
        let rest = &frames[delimiter + 1..];
        if rest.len() < 5 {
            return Err(WireError::TooFewFrames(rest.len()));
        }
        let signed = [&rest[1][..], &rest[2][..], &rest[3][..], &rest[4][..]];
        signer.verify(&rest[0], &signed)?;
        let header: Header =
            serde_json::from_value(json_frame("header", &rest[1])?).map_err(|e| {
                WireError::BadJson {
                    frame: "header",
                    message: e.to_string(),
                }
            })?;
        let parent = json_frame("parent_header", &rest[2])?;
        let parent_header = serde_json::from_value::<Header>(parent).ok();
        let metadata = json_frame("metadata", &rest[3])?;
        let content = Content::from_parts(&header.msg_type, json_frame("content", &rest[4])?)
            .map_err(|e| WireError::BadJson {
                frame: "content",
                message: e.to_string(),
            })?;
        Ok(WireMessage {
            identities: frames[..delimiter].to_vec(),
            message: Message {
                header,
                parent_header,
                metadata,
                content,
                buffers: rest[5..].to_vec(),
            },
        })
    }

    /// Encodes and signs the message into frames ready for a socket.
    pub fn encode(&self, signer: &Signer) -> Vec<Bytes> {
        let m = &self.message;
        let header = serde_json::to_vec(&m.header).expect("header serialises");
        let parent = match &m.parent_header {
            Some(p) => serde_json::to_vec(p).expect("header serialises"),
            None => b"{}".to_vec(),
        };
        let metadata = serde_json::to_vec(&m.metadata).expect("JSON value serialises");
        let content = serde_json::to_vec(&m.content.to_value()).expect("JSON value serialises");
        let signature = signer.sign(&[&header, &parent, &metadata, &content]);
        let mut frames = self.identities.clone();
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(signature));
        frames.extend([header, parent, metadata, content].map(Bytes::from));
        frames.extend(m.buffers.iter().cloned());
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{Content, KernelInfoRequest};

    fn sample() -> WireMessage {
        WireMessage {
            identities: vec![Bytes::from_static(b"peer")],
            message: Message::new(Content::KernelInfoRequest(KernelInfoRequest {}), None, "s"),
        }
    }

    #[test]
    fn round_trip_signed() {
        let signer = Signer::new("secret");
        let frames = sample().encode(&signer);
        let mut verifier = Signer::new("secret");
        let decoded = WireMessage::decode(frames, &mut verifier).unwrap();
        assert_eq!(decoded.identities, vec![Bytes::from_static(b"peer")]);
        assert_eq!(decoded.message.header.msg_type, "kernel_info_request");
    }

    #[test]
    fn wrong_key_and_replay_are_refused() {
        let frames = sample().encode(&Signer::new("secret"));
        assert_eq!(
            WireMessage::decode(frames.clone(), &mut Signer::new("other")).unwrap_err(),
            WireError::BadSignature
        );
        let mut verifier = Signer::new("secret");
        WireMessage::decode(frames.clone(), &mut verifier).unwrap();
        assert_eq!(
            WireMessage::decode(frames, &mut verifier).unwrap_err(),
            WireError::Replayed
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut signer = Signer::new("");
        let no_delim = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert_eq!(
            WireMessage::decode(no_delim, &mut signer).unwrap_err(),
            WireError::MissingDelimiter(2)
        );
        let mut frames = sample().encode(&Signer::new(""));
        let content = frames.len() - 1;
        frames[content] = Bytes::from_static(b"\xff\xfe");
        assert!(matches!(
            WireMessage::decode(frames.clone(), &mut signer).unwrap_err(),
            WireError::NotUtf8 { frame: "content" }
        ));
        frames[content] = Bytes::from_static(b"{not json");
        assert!(matches!(
            WireMessage::decode(frames, &mut signer).unwrap_err(),
            WireError::BadJson { .. }
        ));
    }
}
