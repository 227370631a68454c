//! `kernel_info_request`: who we are and what language we run. Answered from constants, at once,
//! whatever the engine is doing.

use crate::protocol::messages::{HelpLink, KernelInfoReply, LanguageInfo, ReplyStatus};
use crate::protocol::{Content, PROTOCOL_VERSION};

/// The rustc version the kernel was built with (set by build.rs); evcxr compiles cells with the
/// same toolchain.
const RUSTC_VERSION: &str = env!("TORCHBOOK_RUSTC_VERSION");

pub fn kernel_info_reply() -> Content {
    Content::KernelInfoReply(KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: PROTOCOL_VERSION.to_owned(),
        implementation: "torchbook".to_owned(),
        implementation_version: env!("CARGO_PKG_VERSION").to_owned(),
        language_info: LanguageInfo {
            name: "rust".to_owned(),
            version: RUSTC_VERSION.to_owned(),
            mimetype: "text/rust".to_owned(),
            file_extension: ".rs".to_owned(),
            pygments_lexer: "rust".to_owned(),
            codemirror_mode: "rust".to_owned(),
            nbconvert_exporter: "script".to_owned(),
        },
        banner: format!(
            "torchbook {} — Rust notebooks for deep learning (rustc {RUSTC_VERSION})",
            env!("CARGO_PKG_VERSION")
        ),
        help_links: vec![
            HelpLink {
                text: "The Rust standard library".to_owned(),
                url: "https://doc.rust-lang.org/std/".to_owned(),
            },
            HelpLink {
                text: "tch (libtorch for Rust)".to_owned(),
                url: "https://docs.rs/tch/".to_owned(),
            },
            HelpLink {
                text: "evcxr commands (:help)".to_owned(),
                url: "https://github.com/evcxr/evcxr/blob/main/COMMON.md".to_owned(),
            },
        ],
        // Neither of JEP 92's optional features (the debugger, subshells) is implemented.
        debugger: false,
        supported_features: vec![],
    })
}
