//! The Jupyter messaging protocol (5.5), kept apart from sockets: typed message contents
//! ([`messages`]) and the multipart wire format with HMAC signing ([`wire`]).

pub mod messages;
pub mod wire;

pub use messages::{Content, Header, Message};
pub use wire::{Signer, WireError, WireMessage};

/// The protocol version this kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.5";
