//! Key files: where the merchant's signing keys come from at start-up.
//!
//! This adapter owns the file and environment side of keys: it reads PEM or
//! JWK text from a file or from a configured string, and on first start it
//! generates `merchant-key.pem` in the data directory with mode 0600 and logs
//! its `kid`. Parsing and everything after is `ap2::keys`; this module never
//! prints, logs or returns key material, only paths and `kid`s.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use crate::ap2::keys::{KeyRing, PrivateKey, PublicKey};
use crate::domain::{Error, ErrorCode, Result};

/// The file generated in the data directory when no key is configured.
pub const KEY_FILE_NAME: &str = "merchant-key.pem";

/// Key files are small; a bound keeps a misconfigured path (a log, a disk
/// image) from being read into memory.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Where one key's text is.
pub enum KeyMaterial {
    /// A PEM (PKCS#8 or SEC1) or JWK file.
    File(PathBuf),
    /// PEM or JWK text, typically from an environment variable.
    Text(SecretString),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Text(_) => f.write_str("Text(<redacted>)"),
        }
    }
}

impl KeyMaterial {
    fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("key file {}", path.display()),
            Self::Text(_) => "configured key text".to_owned(),
        }
    }

    fn read(&self) -> Result<SecretString> {
        match self {
            Self::File(path) => read_secret_file(path),
            Self::Text(text) => Ok(text.clone()),
        }
    }
}

/// A key that no longer signs but still verifies until `retire_at`.
#[derive(Debug)]
pub struct RetiredKey {
    /// A private key (its public half is kept) or a public JWK / SPKI PEM.
    pub material: KeyMaterial,
    pub retire_at: OffsetDateTime,
}

/// The configured merchant keys.
#[derive(Debug)]
pub struct KeySource {
    pub active: KeyMaterial,
    pub retired: Vec<RetiredKey>,
}

fn config_error(message: String) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

/// Builds the merchant key ring: from `configured` when given, otherwise
/// from `data_dir/merchant-key.pem`, generating that file on first start.
pub fn load_or_generate(data_dir: &Path, configured: Option<KeySource>) -> Result<KeyRing> {
    let Some(source) = configured else {
        return load_or_generate_default(data_dir);
    };
    let active = read_private_key(&source.active)?;
    let mut ring = KeyRing::new(active);
    for retired in &source.retired {
        let text = retired.material.read()?;
        let key = PublicKey::from_text(text.expose_secret()).map_err(|e| {
            config_error(format!("{}: {}", retired.material.describe(), e.message()))
        })?;
        ring = ring.with_retired(key, retired.retire_at)?;
    }
    tracing::info!(kid = %ring.active_kid(), retired = source.retired.len(), "merchant signing key loaded");
    Ok(ring)
}

fn load_or_generate_default(data_dir: &Path) -> Result<KeyRing> {
    let path = data_dir.join(KEY_FILE_NAME);
    if !path.exists() {
        create_private_dir(data_dir)?;
        let key = PrivateKey::generate(&mut OsRng);
        match write_secret_file(&path, &key.export_pkcs8_pem()?) {
            Ok(()) => {
                let ring = KeyRing::new(key);
                tracing::info!(
                    kid = %ring.active_kid(),
                    path = %path.display(),
                    "generated a new merchant signing key"
                );
                return Ok(ring);
            }
            // Another process won the race to create it: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(config_error(format!("cannot write {}: {e}", path.display())));
            }
        }
    }
    let ring = KeyRing::new(read_private_key(&KeyMaterial::File(path.clone()))?);
    tracing::info!(kid = %ring.active_kid(), path = %path.display(), "merchant signing key loaded");
    Ok(ring)
}

/// Reads and parses a private key. Errors name the source, never its text.
pub fn read_private_key(material: &KeyMaterial) -> Result<PrivateKey> {
    let text = material.read()?;
    PrivateKey::from_text(text.expose_secret())
        .map_err(|e| config_error(format!("{}: {}", material.describe(), e.message())))
}

/// Reads a key file into a secret string, refusing oversized files and
/// warning when the file is readable by others.
pub fn read_secret_file(path: &Path) -> Result<SecretString> {
    let fail = |e: std::io::Error| config_error(format!("cannot read {}: {e}", path.display()));
    let file = fs::File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(config_error(format!("{} is too large to be a key file", path.display())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file is readable by group or others; chmod 600 it");
        }
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text).map_err(fail)?;
    Ok(SecretString::from(text))
}

/// Writes a new secret file with mode 0600. It never overwrites: an existing
/// file is reported as `AlreadyExists`.
pub fn write_secret_file(path: &Path, secret: &SecretString) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(secret.expose_secret().as_bytes())?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| config_error(format!("cannot create data directory {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn first_start_generates_a_private_file_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_generate(&data, None).unwrap();
        let path = data.join(KEY_FILE_NAME);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(crate::ap2::keys::PEM_PKCS8));
        let second = load_or_generate(&data, None).unwrap();
        assert_eq!(first.active_kid(), second.active_kid());
    }

    #[test]
    fn configured_keys_load_from_files_and_text_with_retired_keys() {
        let dir = tempfile::tempdir().unwrap();
        let active = PrivateKey::generate(&mut OsRng);
        let old = PrivateKey::generate(&mut OsRng);
        let active_path = dir.path().join("active.pem");
        write_secret_file(&active_path, &active.export_pkcs8_pem().unwrap()).unwrap();
        let retire_at = datetime!(2026-06-01 0:00 UTC);
        let cases = [
            KeySource {
                active: KeyMaterial::File(active_path.clone()),
                retired: vec![RetiredKey {
                    material: KeyMaterial::Text(SecretString::from(
                        old.public().to_jwk().to_string(),
                    )),
                    retire_at,
                }],
            },
            KeySource {
                active: KeyMaterial::Text(active.export_jwk()),
                retired: vec![RetiredKey {
                    material: KeyMaterial::Text(old.export_pkcs8_pem().unwrap()),
                    retire_at,
                }],
            },
        ];
        for source in cases {
            let ring = load_or_generate(dir.path(), Some(source)).unwrap();
            assert_eq!(ring.active_kid(), active.public().thumbprint());
            let before = retire_at - time::Duration::seconds(1);
            assert!(ring.public_keys().find(old.public().thumbprint(), before).is_ok());
            assert!(ring.public_keys().find(old.public().thumbprint(), retire_at).is_err());
        }
        assert!(!dir.path().join(KEY_FILE_NAME).exists(), "configured keys generate nothing");
    }

    #[test]
    fn bad_key_sources_name_the_source_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        fs::write(
            &junk,
            format!("{}\nSECRETSECRET\n-----END PRIVATE KEY-----\n", crate::ap2::keys::PEM_PKCS8),
        )
        .unwrap();
        let cases = [
            KeyMaterial::File(junk.clone()),
            KeyMaterial::File(dir.path().join("missing.pem")),
            KeyMaterial::Text(SecretString::from("SECRETSECRET".to_owned())),
        ];
        for material in cases {
            let shown = format!("{material:?}");
            let err =
                load_or_generate(dir.path(), Some(KeySource { active: material, retired: vec![] }))
                    .unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput);
            assert!(!err.message().contains("SECRET"), "{}", err.message());
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }

    #[test]
    fn secret_files_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_secret_file(&path, &SecretString::from("a".to_owned())).unwrap();
        let err = write_secret_file(&path, &SecretString::from("b".to_owned())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&path).unwrap(), "a");
    }
}
