//! The Jupyter messaging protocol (5.5), kept apart from sockets: typed message contents
//! ([`messages`]), the multipart wire format with HMAC signing ([`wire`]), and the connection
//! file a frontend writes ([`connection`]).

pub mod connection;
pub mod messages;
pub mod wire;

pub use messages::{Content, Header, Message};
pub use wire::{Signer, WireError, WireMessage};

/// The protocol version this kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.5";
