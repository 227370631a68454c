//! Bearer tokens. The service listens on loopback unless told otherwise, and on any other
//! address refuses to start without a token (`--token-file`, or `--token-env NAME` naming an
//! environment variable). Requests to `/v1/predict` and `/metrics` then need
//! `Authorization: Bearer <token>`; `/healthz` stays open for load balancers' probes.
//!
//! Only the SHA-256 of the token is kept, and a request's token is hashed and compared with
//! it in constant time (`subtle`), so neither the comparison's time nor its length says how
//! much of a guess was right. Tokens are never printed or logged.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Tokens shorter than this are refused (use e.g. `openssl rand -hex 32`).
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("--token-env {0}: the environment variable is not set (or not UTF-8)")]
    Env(String),
    #[error("{origin}: expected a token of at least {MIN_TOKEN_LEN} characters without spaces, found {found}")]
    Weak { origin: String, found: String },
}

#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::File { path: path.display().to_string(), source })?;
        Token::new(text.trim(), &format!("token file {}", path.display()))
    }

    pub fn from_env(name: &str) -> Result<Token, TokenError> {
        let value = std::env::var(name).map_err(|_| TokenError::Env(name.to_string()))?;
        Token::new(value.trim(), &format!("--token-env {name}"))
    }

    pub fn new(token: &str, origin: &str) -> Result<Token, TokenError> {
        if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            let found = if token.chars().any(char::is_whitespace) {
                "white space inside it".to_string()
            } else {
                format!("{} characters", token.chars().count())
            };
            return Err(TokenError::Weak { origin: origin.to_string(), found });
        }
        Ok(Token { digest: Sha256::digest(token.as_bytes()).into() })
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header else { return false };
        let Some(given) = value.strip_prefix(b"Bearer ") else { return false };
        let digest: [u8; 32] = Sha256::digest(given).into();
        digest.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let token = Token::new("0123456789abcdef0123", "test").unwrap();
        assert!(token.accepts(Some(b"Bearer 0123456789abcdef0123")));
        assert!(!token.accepts(Some(b"Bearer 0123456789abcdef012")));
        assert!(!token.accepts(Some(b"Bearer 0123456789abcdef01234")));
        assert!(!token.accepts(Some(b"Basic 0123456789abcdef0123")));
        assert!(!token.accepts(None));
        assert!(!format!("{token:?}").contains("0123"), "never printed");
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(Token::new("short", "x").unwrap_err().to_string().contains("at least 16 characters"));
        assert!(Token::new("0123456789 abcdef0123", "x").unwrap_err().to_string().contains("white space"));
    }
}
