//! Encrypted files in the [age](https://age-encryption.org/v1) format, so that what a notebook
//! seals can be opened with the `age` command (`age -d -i key.txt data.csv.age`) and what
//! `age` sealed can be read here.
//!
//! A [`Key`] is either an X25519 identity (from a key file written by `age-keygen` or by
//! [`Key::save`], from an environment variable naming one, or new from [`Key::generate`]) or a
//! passphrase (typed in with [`Key::ask`], which uses `input_password`, so it never reaches
//! the notebook's history). Every loader and saver of the runtime takes a [`DataPath`]: a plain
//! path, or [`encrypted`]`(path, &key)`. Plaintext exists only in memory: sealing encrypts into
//! a buffer that is then written atomically, and opening decrypts into memory, so no
//! unencrypted temporary file is ever written.
//!
//! A wrong key, a truncated file and a tampered file are each an [`Error::Crypto`] that names
//! the file; an encrypted file read without a key says so instead of failing to parse.
//!
//! ```
//! use torchbook::secure::{self, Key};
//!
//! let dir = std::env::temp_dir().join(format!("tb-secure-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let key = Key::generate();
//! key.save(dir.join("key.txt")).unwrap(); // 0600, `age -d -i key.txt` reads it
//! let sealed = secure::encrypted(dir.join("labels.csv.age"), &key);
//! sealed.write(b"x,label\n0.5,1\n").unwrap();
//! assert_eq!(sealed.read().unwrap(), b"x,label\n0.5,1\n");
//!
//! // Another key is refused with the file's name; so is reading it as plain data.
//! let err = secure::encrypted(dir.join("labels.csv.age"), &Key::generate()).read().unwrap_err();
//! assert!(err.to_string().contains("labels.csv.age"), "{err}");
//! assert!(secure::DataPath::from(dir.join("labels.csv.age")).read().is_err());
//! # std::fs::remove_dir_all(dir).unwrap();
//! ```

use crate::error::{Error, Result};
use age::secrecy::{ExposeSecret, SecretString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The first line of every binary age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The first line of an ASCII-armored age file (`age -a`).
const ARMOR_MAGIC: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// What seals and opens files: an X25519 identity or a passphrase. `Debug` never shows the
/// secret.
#[derive(Clone)]
pub struct Key(KeyKind);

#[derive(Clone)]
enum KeyKind {
    Identity(age::x25519::Identity),
    Passphrase(SecretString),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            KeyKind::Identity(identity) => write!(f, "Key(x25519 {})", identity.to_public()),
            KeyKind::Passphrase(_) => write!(f, "Key(passphrase)"),
        }
    }
}

impl Key {
    /// A new random X25519 identity; keep it with [`Key::save`].
    pub fn generate() -> Key {
        Key(KeyKind::Identity(age::x25519::Identity::generate()))
    }

    /// A passphrase (scrypt in the age format; `age -d` asks for it). Sealing with a
    /// passphrase costs about a second by design (the key derivation is made slow).
    pub fn passphrase(passphrase: impl Into<String>) -> Result<Key> {
        let passphrase: String = passphrase.into();
        if passphrase.is_empty() {
            return Err(Error::Usage("an empty passphrase protects nothing: type one, or use a key file".into()));
        }
        Ok(Key(KeyKind::Passphrase(SecretString::from(passphrase))))
    }

    /// Asks for a passphrase with `input_password`: the frontend hides what is typed and the
    /// kernel keeps it out of history, iopub and logs.
    pub fn ask(prompt: &str) -> Result<Key> {
        Key::passphrase(crate::input::input_password(prompt)?)
    }

    /// The first X25519 identity (`AGE-SECRET-KEY-1…`) in an age identity file, as
    /// `age-keygen -o key.txt` writes it (comment lines are skipped).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Key> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let text = SecretString::from(text);
        Key::from_identity_text(text.expose_secret()).map_err(|message| Error::crypto(path, message))
    }

    /// The key named by the environment variable `variable` (e.g. `TORCHBOOK_KEY_FILE`): the
    /// path of a key file, or the `AGE-SECRET-KEY-1…` line itself.
    pub fn from_env(variable: &str) -> Result<Key> {
        let value = std::env::var(variable)
            .map_err(|_| Error::Usage(format!("the environment variable {variable} is not set (it should name an age key file)")))?;
        let value = SecretString::from(value);
        let value = value.expose_secret().trim();
        if value.starts_with("AGE-SECRET-KEY-") {
            return Key::from_identity_text(value)
                .map_err(|message| Error::Usage(format!("the environment variable {variable}: {message}")));
        }
        Key::from_file(value)
    }

    fn from_identity_text(text: &str) -> std::result::Result<Key, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or("no key in it (expected a line AGE-SECRET-KEY-1…, as age-keygen writes)")?;
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| "not an age X25519 identity (expected a line AGE-SECRET-KEY-1…, as age-keygen writes)".to_string())?;
        Ok(Key(KeyKind::Identity(identity)))
    }

    /// The public key (`age1…`) others can encrypt to with `age -r`; `None` for a passphrase.
    pub fn public_key(&self) -> Option<String> {
        match &self.0 {
            KeyKind::Identity(identity) => Some(identity.to_public().to_string()),
            KeyKind::Passphrase(_) => None,
        }
    }

    /// Writes an identity as an age key file (readable by `age -d -i`), created `0600` and
    /// replaced whole. A passphrase is never written anywhere.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref();
        let KeyKind::Identity(identity) = &self.0 else {
            return Err(Error::Usage("a passphrase is not saved to a file: remember it, or use Key::generate()".into()));
        };
        let text = format!(
            "# created by torchbook\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        );
        let text = SecretString::from(text);
        torchbook_display::atomic::write_with(path, |temporary| {
            let mut file = std::fs::File::options().write(true).create_new(true).mode(0o600).open(temporary)?;
            file.write_all(text.expose_secret().as_bytes())
        })
        .map_err(|e| Error::io(path, e))
    }
}

/// True when `bytes` start like an age file (binary or armored), or are a file cut inside
/// the first line of one.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC) || bytes.starts_with(ARMOR_MAGIC) || (bytes.len() >= 4 && AGE_MAGIC.starts_with(bytes))
}

/// Encrypts `plaintext` with `key` into an age file's bytes.
pub fn seal(plaintext: &[u8], key: &Key) -> Result<Vec<u8>> {
    seal_bytes(plaintext, key).map_err(|e| Error::crypto("(in memory)", e))
}

/// Decrypts an age file's bytes with `key`.
pub fn open(sealed: &[u8], key: &Key) -> Result<Vec<u8>> {
    open_bytes(sealed, key).map_err(|message| Error::crypto("(in memory)", message))
}

fn seal_bytes(plaintext: &[u8], key: &Key) -> std::result::Result<Vec<u8>, String> {
    let encryptor = match &key.0 {
        KeyKind::Identity(identity) => {
            let recipient = identity.to_public();
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).map_err(|e| e.to_string())?
        }
        KeyKind::Passphrase(passphrase) => age::Encryptor::with_user_passphrase(passphrase.clone()),
    };
    let mut sealed = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor.wrap_output(&mut sealed).map_err(|e| e.to_string())?;
    writer.write_all(plaintext).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(sealed)
}

fn open_bytes(sealed: &[u8], key: &Key) -> std::result::Result<Vec<u8>, String> {
    if sealed.starts_with(ARMOR_MAGIC) {
        return Err("ASCII-armored age files are not read here: convert it with `age -d … | age -e …` without -a".into());
    }
    if sealed.len() < AGE_MAGIC.len() && AGE_MAGIC.starts_with(sealed) {
        return Err("the file is truncated (it ends inside the age header)".into());
    }
    if !sealed.starts_with(AGE_MAGIC) {
        return Err("not an age-encrypted file (it does not start with \"age-encryption.org/v1\")".into());
    }
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(describe)?;
    let scrypt_identity;
    let identity: &dyn age::Identity = match (&key.0, decryptor.is_scrypt()) {
        (KeyKind::Identity(identity), false) => identity,
        (KeyKind::Passphrase(passphrase), true) => {
            scrypt_identity = age::scrypt::Identity::new(passphrase.clone());
            &scrypt_identity
        }
        (KeyKind::Identity(_), true) => return Err("it was encrypted with a passphrase, and a key file was given".into()),
        (KeyKind::Passphrase(_), false) => return Err("it was encrypted to a key (age -r), and a passphrase was given".into()),
    };
    let mut reader = decryptor.decrypt(std::iter::once(identity)).map_err(describe)?;
    let mut plaintext = Vec::with_capacity(sealed.len());
    reader.read_to_end(&mut plaintext).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the file is truncated (its last chunk is missing)".to_string(),
        _ => format!("the file is damaged or was tampered with ({e})"),
    })?;
    Ok(plaintext)
}

/// age's errors, reworded for someone holding a file and a key.
fn describe(error: age::DecryptError) -> String {
    use age::DecryptError as E;
    match error {
        E::NoMatchingKeys => "wrong key: it was not encrypted to this key".into(),
        E::DecryptionFailed | E::KeyDecryptionFailed => "wrong passphrase, or the file was tampered with".into(),
        E::InvalidMac => "the file's header was tampered with (its MAC does not match)".into(),
        E::InvalidHeader => "the file's age header is damaged or truncated".into(),
        E::UnknownFormat => "an age format version this library does not know".into(),
        E::ExcessiveWork { required, .. } => format!("the passphrase's work factor (2^{required}) is beyond the allowed maximum"),
        E::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "the file is truncated".into(),
        other => other.to_string(),
    }
}

/// A file the runtime reads or writes: a path, and the key when the file is encrypted.
/// Every path type converts into one ([`IntoDataPath`]); [`encrypted`] makes a sealed one.
#[derive(Clone, Debug)]
pub struct DataPath {
    pub path: PathBuf,
    pub key: Option<Key>,
}

/// A path that is encrypted with `key` (age): written sealed, read by opening it.
pub fn encrypted(path: impl AsRef<Path>, key: &Key) -> DataPath {
    DataPath {
        path: path.as_ref().to_path_buf(),
        key: Some(key.clone()),
    }
}

impl DataPath {
    /// The whole file, decrypted when it is sealed. A sealed file without a key, or a key for
    /// a file that is not sealed, is an error naming the file.
    pub fn read(&self) -> Result<Vec<u8>> {
        let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        match (&self.key, is_sealed(&bytes)) {
            (Some(key), true) => open_bytes(&bytes, key).map_err(|message| Error::crypto(&self.path, message)),
            (None, false) => Ok(bytes),
            (None, true) => Err(Error::crypto(
                &self.path,
                "the file is encrypted (age): read it with secure::encrypted(path, &key)",
            )),
            (Some(_), false) => Err(Error::crypto(
                &self.path,
                "a key was given but the file is not encrypted (no age header): read it as a plain path, or seal it first",
            )),
        }
    }

    /// The file as UTF-8 text (decrypted when sealed).
    pub fn read_to_string(&self) -> Result<String> {
        String::from_utf8(self.read()?).map_err(|_| Error::parse(&self.path, None, "not UTF-8 text"))
    }

    /// Replaces the file whole with `bytes`, sealed when there is a key; the plaintext is
    /// encrypted in memory first, so it never touches the disk.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let sealed;
        let contents = match &self.key {
            Some(key) => {
                sealed = seal_bytes(bytes, key).map_err(|message| Error::crypto(&self.path, message))?;
                &sealed[..]
            }
            None => bytes,
        };
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        torchbook_display::atomic::write(&self.path, contents).map_err(|e| Error::io(&self.path, e))
    }

    /// A file inside this folder, with the same key (image and text folders).
    pub fn join(&self, name: impl AsRef<Path>) -> DataPath {
        DataPath {
            path: self.path.join(name),
            key: self.key.clone(),
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }
}

/// Anything the runtime's loaders and savers take as a file: every `AsRef<Path>` (plain) and
/// [`DataPath`] (maybe encrypted).
pub trait IntoDataPath {
    fn into_data_path(self) -> DataPath;
}

impl<P: AsRef<Path>> IntoDataPath for P {
    fn into_data_path(self) -> DataPath {
        DataPath {
            path: self.as_ref().to_path_buf(),
            key: None,
        }
    }
}

impl IntoDataPath for DataPath {
    fn into_data_path(self) -> DataPath {
        self
    }
}

impl IntoDataPath for &DataPath {
    fn into_data_path(self) -> DataPath {
        self.clone()
    }
}

impl<P: AsRef<Path>> From<P> for DataPath {
    fn from(path: P) -> DataPath {
        path.into_data_path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_buffer_opens_with_its_key_and_no_other() {
        let key = Key::generate();
        let sealed = seal(b"weights", &key).unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(open(&sealed, &key).unwrap(), b"weights");
        let wrong = open(&sealed, &Key::generate()).unwrap_err().to_string();
        assert!(wrong.contains("wrong key"), "{wrong}");
        let passphrase = open(&sealed, &Key::passphrase("x").unwrap()).unwrap_err().to_string();
        assert!(passphrase.contains("encrypted to a key"), "{passphrase}");
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_an_error() {
        let key = Key::generate();
        let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = seal(&plaintext, &key).unwrap();
        for cut in [1, 30, sealed.len() / 2, sealed.len() - 17, sealed.len() - 1] {
            assert!(open(&sealed[..cut], &key).is_err(), "cut at {cut} opened");
        }
        for at in [25, 60, 150, sealed.len() / 3, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x40;
            assert!(open(&tampered, &key).is_err(), "flip at {at} opened");
        }
    }

    #[test]
    fn a_debug_print_hides_the_secret() {
        let key = Key::generate();
        let shown = format!("{key:?} {:?}", Key::passphrase("hunter2").unwrap());
        assert!(!shown.contains("AGE-SECRET-KEY") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(&key.public_key().unwrap()));
    }

    #[test]
    fn a_key_comes_from_an_env_var_naming_a_file_or_holding_the_key() {
        let dir = std::env::temp_dir().join(format!("tb-secure-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = Key::generate();
        key.save(dir.join("key.txt")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("key.txt")).unwrap().permissions().mode() & 0o777, 0o600);
        std::env::set_var("TB_SECURE_TEST_KEY_FILE", dir.join("key.txt"));
        assert_eq!(Key::from_env("TB_SECURE_TEST_KEY_FILE").unwrap().public_key(), key.public_key());
        let text = std::fs::read_to_string(dir.join("key.txt")).unwrap();
        let line = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
        std::env::set_var("TB_SECURE_TEST_KEY", line);
        assert_eq!(Key::from_env("TB_SECURE_TEST_KEY").unwrap().public_key(), key.public_key());
        let missing = Key::from_env("TB_SECURE_TEST_UNSET").unwrap_err().to_string();
        assert!(missing.contains("TB_SECURE_TEST_UNSET"), "{missing}");
        std::fs::write(dir.join("bad.txt"), "# nothing\n").unwrap();
        let bad = Key::from_file(dir.join("bad.txt")).unwrap_err().to_string();
        assert!(bad.contains("bad.txt") && bad.contains("AGE-SECRET-KEY-1"), "{bad}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
