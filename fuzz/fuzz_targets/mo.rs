//! gettext `.mo` catalogues (`torchbook::datasets::parse_mo`, what `load_mo` and
//! `message_catalogues` read) from any bytes.
//!
//! Checks, beyond "never panics" (no huge allocation from a count in the header either: the
//! fuzzer's 2 GB memory limit fails the run): every message is non-empty text without NUL; the
//! messages of a file of n bytes hold at most n characters in all (a catalogue stores each
//! string once; entries pointing at the same bytes must not let a small file expand to
//! gigabytes); a refusal says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchbook::datasets::parse_mo;

fuzz_target!(|data: &[u8]| {
    match parse_mo(data) {
        Ok(messages) => {
            let characters: usize = messages.iter().map(|m| m.chars().count()).sum();
            assert!(characters <= data.len(), "{characters} characters from {} bytes", data.len());
            for message in &messages {
                assert!(!message.is_empty() && !message.contains('\0'), "{message:?}");
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
