//! Wire frames (`protocol::wire`): `WireMessage::decode` on any multipart message, with the
//! signature check, the header and the content decode.
//!
//! Input: byte 0 is the mode, the rest the frames, separated by 0x1F bytes. Mode bit 0: the
//! kernel has a key (`fuzz-key`) rather than none (signing off); bit 1: the signature frame is
//! replaced by the right HMAC before decoding, so that the JSON decoding behind the signature
//! check is fuzzed too.
//!
//! Checks, beyond "never panics":
//! - with a key, frames are accepted only if their signature frame is the HMAC-SHA256 of the
//!   four signed frames (the same frames under another key are refused: `BadSignature`);
//! - a decoded message re-encodes (signed) and decodes to the same message: identities,
//!   header, parent header, metadata, content and buffers;
//! - the same frames a second time are refused as a replay;
//! - the re-encoded frames with a wrong signature (one hex digit changed, another key's, none,
//!   cut short) are always refused with `BadSignature`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use torchbook_kernel::protocol::{Signer, WireError, WireMessage};

const KEY: &str = "fuzz-key";
const SEPARATOR: u8 = 0x1f;
const DELIMITER: &[u8] = b"<IDS|MSG>";

/// The frames after the delimiter, if there are enough for a message.
fn signed_part(frames: &[Bytes]) -> Option<usize> {
    let delimiter = frames.iter().position(|f| f.as_ref() == DELIMITER)?;
    (frames.len() >= delimiter + 6).then_some(delimiter + 1)
}

fn signature_of(frames: &[Bytes], at: usize, key: &str) -> String {
    let parts: Vec<&[u8]> = frames[at + 1..at + 5].iter().map(|f| f.as_ref()).collect();
    Signer::new(key).sign(&parts)
}

fn same(a: &WireMessage, b: &WireMessage) {
    assert_eq!(a.identities, b.identities);
    let (a, b) = (&a.message, &b.message);
    assert_eq!(a.header, b.header);
    assert_eq!(a.parent_header, b.parent_header);
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.content.msg_type(), b.content.msg_type());
    assert_eq!(a.content.to_value(), b.content.to_value());
    assert_eq!(a.buffers, b.buffers);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let key = if mode & 1 == 1 { KEY } else { "" };
    let mut frames: Vec<Bytes> = rest.split(|b| *b == SEPARATOR).map(Bytes::copy_from_slice).collect();
    if mode & 2 == 2 {
        if let Some(at) = signed_part(&frames) {
            frames[at] = Bytes::from(signature_of(&frames, at, key));
        }
    }

    let mut signer = Signer::new(key);
    let decoded = WireMessage::decode(frames.clone(), &mut signer);
    let Ok(message) = decoded else { return };

    let at = signed_part(&frames).expect("a decoded message has a delimiter and five frames");
    if !key.is_empty() {
        let given = std::str::from_utf8(&frames[at]).expect("an accepted signature is hex");
        assert!(given.eq_ignore_ascii_case(&signature_of(&frames, at, key)), "accepted a wrong signature");
        let refused = WireMessage::decode(frames.clone(), &mut Signer::new("another-key"));
        assert_eq!(refused.unwrap_err(), WireError::BadSignature);
        assert_eq!(WireMessage::decode(frames, &mut signer).unwrap_err(), WireError::Replayed);
    }

    // Re-encoded with a key, it decodes to the same message, once.
    let encoded = message.encode(&Signer::new(KEY));
    let mut verifier = Signer::new(KEY);
    let again = WireMessage::decode(encoded.clone(), &mut verifier).expect("a re-encoded message decodes");
    same(&message, &again);
    assert_eq!(WireMessage::decode(encoded.clone(), &mut verifier).unwrap_err(), WireError::Replayed);

    // Wrong signatures on otherwise good frames.
    let at = signed_part(&encoded).expect("encode writes the delimiter and five frames");
    let good = String::from_utf8(encoded[at].to_vec()).unwrap();
    let digit = data.len() % good.len();
    let mut flipped = good.clone().into_bytes();
    flipped[digit] = if flipped[digit] == b'0' { b'1' } else { b'0' };
    let wrong = [
        String::from_utf8(flipped).unwrap(),
        signature_of(&encoded, at, "another-key"),
        String::new(),
        good[..good.len() - 2].to_owned(),
    ];
    for signature in wrong {
        let mut frames = encoded.clone();
        frames[at] = Bytes::from(signature);
        assert_eq!(WireMessage::decode(frames, &mut Signer::new(KEY)).unwrap_err(), WireError::BadSignature);
    }
});
