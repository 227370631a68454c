//! The payload a launcher sends Enterprise Gateway: the connection info encrypted exactly as EG's
//! `ResponseManager._decode_payload` (enterprise_gateway/services/processproxies/processproxy.py)
//! decrypts it, and as its own `launch_ipykernel.py` (`_encrypt`) builds it:
//!
//! 1. the connection info (UTF-8 JSON) is encrypted with AES-128-ECB, PKCS#7 padding, under a
//!    random 16-byte key, and base64'd (`conn_info`);
//! 2. that key is encrypted with EG's RSA public key (`--public-key`: base64 of the DER
//!    SubjectPublicKeyInfo, i.e. a PEM body without its lines) with PKCS#1 v1.5, and base64'd
//!    (`key`);
//! 3. `{"version": 1, "key": …, "conn_info": …}` is serialised and base64'd once more; those bytes
//!    are what goes over the TCP connection.
//!
//! ECB and PKCS#1 v1.5 are EG's choice, not ours: the launcher has to speak them. Only the public
//! key is used here (encryption), so the RSA private-key timing issue (RUSTSEC-2023-0071) does not
//! apply.

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyInit};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Encrypt, RsaPublicKey};

/// The payload version EG's launchers send (`LAUNCHER_VERSION`).
pub const LAUNCHER_VERSION: u32 = 1;

/// Why the public key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("--public-key is not base64: {0}")]
    Base64(base64::DecodeError),
    #[error("--public-key is not an RSA public key (base64 of a DER SubjectPublicKeyInfo, as Enterprise Gateway passes it): {0}")]
    Der(rsa::pkcs8::spki::Error),
    #[error("cannot encrypt with the public key: {0}")]
    Encrypt(rsa::Error),
}

/// EG's RSA public key, parsed.
#[derive(Debug, Clone)]
pub struct PublicKey(RsaPublicKey);

impl PublicKey {
    /// Parses `--public-key`: base64 (whitespace and PEM armour lines tolerated) of a DER
    /// SubjectPublicKeyInfo holding an RSA key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let body: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("-----"))
            .flat_map(|line| line.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = BASE64.decode(body.as_bytes()).map_err(KeyError::Base64)?;
        RsaPublicKey::from_public_key_der(&der).map(PublicKey).map_err(KeyError::Der)
    }

    /// Encrypts `aes_key` with PKCS#1 v1.5 (what EG's `PKCS1_v1_5.new(private_key).decrypt` reads).
    fn encrypt(&self, aes_key: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.0.encrypt(&mut rand::rngs::OsRng, Pkcs1v15Encrypt, aes_key).map_err(KeyError::Encrypt)
    }
}

/// AES-128-ECB with PKCS#7 padding.
type Aes128Ecb = ecb::Encryptor<aes::Aes128>;

/// The bytes to send to EG's response address for `connection_info` (a JSON object), encrypted
/// under a fresh random AES key.
pub fn encrypt_payload(connection_info: &serde_json::Value, key: &PublicKey) -> Result<Vec<u8>, KeyError> {
    let mut aes_key = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut aes_key);
    encrypt_payload_with(connection_info, key, &aes_key)
}

fn encrypt_payload_with(connection_info: &serde_json::Value, key: &PublicKey, aes_key: &[u8; 16]) -> Result<Vec<u8>, KeyError> {
    let plain = serde_json::to_vec(connection_info).expect("JSON values serialise");
    let sealed = Aes128Ecb::new(aes_key.into()).encrypt_padded_vec_mut::<Pkcs7>(&plain);
    let payload = serde_json::json!({
        "version": LAUNCHER_VERSION,
        "key": BASE64.encode(key.encrypt(aes_key)?),
        "conn_info": BASE64.encode(sealed),
    });
    Ok(BASE64.encode(serde_json::to_vec(&payload).expect("JSON values serialise")).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockDecryptMut;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::RsaPrivateKey;

    /// A 1024-bit key, the size EG's ResponseManager generates (`KEY_SIZE`).
    fn key_pair() -> (RsaPrivateKey, String) {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let der = private.to_public_key().to_public_key_der().unwrap();
        (private, BASE64.encode(der.as_bytes()))
    }

    /// EG's `_decode_payload`, step by step, with the RustCrypto crates.
    fn decode(payload: &[u8], private: &RsaPrivateKey) -> serde_json::Value {
        let outer: serde_json::Value = serde_json::from_slice(&BASE64.decode(payload).unwrap()).unwrap();
        assert_eq!(outer["version"], 1);
        let aes_key = private
            .decrypt(Pkcs1v15Encrypt, &BASE64.decode(outer["key"].as_str().unwrap()).unwrap())
            .unwrap();
        assert_eq!(aes_key.len(), 16);
        let sealed = BASE64.decode(outer["conn_info"].as_str().unwrap()).unwrap();
        assert_eq!(sealed.len() % 16, 0);
        let plain = ecb::Decryptor::<aes::Aes128>::new(aes_key.as_slice().into())
            .decrypt_padded_vec_mut::<Pkcs7>(&sealed)
            .unwrap();
        serde_json::from_slice(&plain).unwrap()
    }

    #[test]
    fn round_trip_as_enterprise_gateway_decrypts() {
        let (private, public) = key_pair();
        let key = PublicKey::parse(&public).unwrap();
        let info = serde_json::json!({"shell_port": 52001, "key": "k", "pid": 7, "comm_port": 52006,
            "kernel_id": "0b7ff2ea-0000-4000-8000-000000000000", "note": "ünïcode"});
        let payload = encrypt_payload(&info, &key).unwrap();
        assert!(payload.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)));
        assert_eq!(decode(&payload, &private), info);
        // A fresh AES key each time.
        assert_ne!(encrypt_payload(&info, &key).unwrap(), payload);
    }

    #[test]
    fn padding_of_a_whole_block_adds_a_block() {
        let (private, public) = key_pair();
        let key = PublicKey::parse(&public).unwrap();
        // `"aaaaaaaaaaaaaa"` is 16 bytes of JSON: PKCS#7 then adds a full block of 16s.
        let info = serde_json::json!("aaaaaaaaaaaaaa");
        let payload = encrypt_payload_with(&info, &key, &[7; 16]).unwrap();
        let outer: serde_json::Value = serde_json::from_slice(&BASE64.decode(&payload).unwrap()).unwrap();
        assert_eq!(BASE64.decode(outer["conn_info"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(decode(&payload, &private), info);
    }

    #[test]
    fn pem_armour_and_line_breaks_are_accepted() {
        let (_, public) = key_pair();
        let wrapped: Vec<&str> = public.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", wrapped.join("\n"));
        PublicKey::parse(&pem).unwrap();
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(matches!(PublicKey::parse("not base64!"), Err(KeyError::Base64(_))));
        assert!(matches!(PublicKey::parse("aGVsbG8gd29ybGQ="), Err(KeyError::Der(_))));
        let message = PublicKey::parse("aGVsbG8gd29ybGQ=").unwrap_err().to_string();
        assert!(message.contains("not an RSA public key"), "{message}");
    }
}
