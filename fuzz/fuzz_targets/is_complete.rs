//! `is_complete_request` (`kernel::is_complete::check`) on any UTF-8 (the input bytes, invalid
//! sequences replaced).
//!
//! Checks, beyond "never panics": the answer is one of `Complete`, `Incomplete` or `Invalid`;
//! an `Incomplete` indent is whole levels of four spaces; leading spaces do not change the
//! answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchbook_kernel::kernel::is_complete::{check, Completeness};

fuzz_target!(|data: &[u8]| {
    let code = String::from_utf8_lossy(data);
    let answer = check(&code);
    match &answer {
        Completeness::Complete | Completeness::Invalid => {}
        Completeness::Incomplete { indent } => {
            assert!(indent.len() % 4 == 0 && indent.bytes().all(|b| b == b' '), "{indent:?}");
        }
    }
    assert_eq!(check(&format!("  {code}")), answer, "{code:?}");
});
