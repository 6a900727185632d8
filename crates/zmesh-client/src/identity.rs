//! The user's identity: one Ed25519 signing key, kept in a passphrase-protected keystore file.
//!
//! The key signs every storage request (holders check that the signer owns the storage key) and,
//! through [`SigningIdentity::envelope_secret`], roots the keys that encrypt the user's data. Its
//! SHA-256 is the user's address. Losing the file loses the data, so it is written once, never
//! overwritten, and fsynced (file and directory) before `create` returns.
//!
//! The passphrase comes from `ZMESH_PASSPHRASE` or a passphrase file, never only from a prompt, so
//! scripts and tests can run unattended.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;
use zmesh_crypto::CryptoError;
use zmesh_crypto::keystore::{Argon2Params, open_with_passphrase, seal_with_passphrase};
use zmesh_crypto::sign::SigningIdentity;
use zmesh_types::Key256;

use crate::{ClientError, Result};

/// The environment variable holding the keystore passphrase.
pub const PASSPHRASE_ENV: &str = "ZMESH_PASSPHRASE";

/// `$HOME/.zmesh/identity`, the default keystore path.
///
/// # Errors
/// [`ClientError::NoHome`] if `HOME` is unset or empty.
pub fn default_path() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".zmesh").join("identity")),
        _ => Err(ClientError::NoHome),
    }
}

/// The keystore passphrase: the first line of `file` if given (its trailing newline stripped),
/// else `ZMESH_PASSPHRASE`.
///
/// # Errors
/// [`ClientError::NoPassphrase`] if neither is given; [`ClientError::EmptyPassphrase`] for a
/// file whose first line is empty; I/O errors reading the file.
pub fn passphrase(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    resolve_passphrase(file, std::env::var_os(PASSPHRASE_ENV).map(|v| v.into_encoded_bytes()))
}

fn resolve_passphrase(file: Option<&Path>, env: Option<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(path) = file {
        let bytes = Zeroizing::new(fs::read(path).map_err(|e| {
            ClientError::io(format!("reading passphrase file {}", path.display()), e)
        })?);
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(ClientError::EmptyPassphrase { path: path.to_owned() });
        }
        return Ok(Zeroizing::new(line.to_vec()));
    }
    match env {
        Some(v) if !v.is_empty() => Ok(Zeroizing::new(v)),
        _ => Err(ClientError::NoPassphrase),
    }
}

/// A user's unlocked identity.
#[derive(Debug)]
pub struct Identity {
    signing: SigningIdentity,
}

impl Identity {
    /// Generates a new identity and writes it to `path`, sealed under `passphrase` with the default
    /// Argon2id parameters.
    ///
    /// # Errors
    /// [`ClientError::IdentityExists`] if `path` exists (it is never overwritten); I/O errors.
    pub fn create(path: &Path, passphrase: &[u8]) -> Result<Identity> {
        Self::create_with_params(path, passphrase, Argon2Params::default())
    }

    /// [`Identity::create`] with chosen Argon2id parameters (tests use cheap ones).
    pub fn create_with_params(
        path: &Path,
        passphrase: &[u8],
        params: Argon2Params,
    ) -> Result<Identity> {
        let signing = SigningIdentity::generate();
        let sealed =
            seal_with_passphrase(passphrase, signing.secret_bytes().as_ref(), params).map_err(
                |e| ClientError::BadIdentity { path: path.to_owned(), reason: e.to_string() },
            )?;
        write_new(path, &sealed)?;
        Ok(Identity { signing })
    }

    /// Unlocks the identity at `path`.
    ///
    /// # Errors
    /// [`ClientError::NoIdentity`] if there is no file, [`ClientError::WrongPassphrase`],
    /// [`ClientError::BadIdentity`] for a file that is not a keystore.
    pub fn load(path: &Path, passphrase: &[u8]) -> Result<Identity> {
        let sealed = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NoIdentity { path: path.to_owned() });
            }
            Err(e) => return Err(ClientError::io(format!("reading {}", path.display()), e)),
        };
        let secret = open_with_passphrase(passphrase, &sealed).map_err(|e| match e {
            CryptoError::WrongPassphrase => ClientError::WrongPassphrase { path: path.to_owned() },
            other => ClientError::BadIdentity { path: path.to_owned(), reason: other.to_string() },
        })?;
        let secret: &[u8; 32] =
            secret.as_slice().try_into().map_err(|_| ClientError::BadIdentity {
                path: path.to_owned(),
                reason: format!("secret is {} bytes, expected 32", secret.len()),
            })?;
        Ok(Identity { signing: SigningIdentity::from_secret_bytes(secret) })
    }

    /// An identity from a raw secret, never written anywhere (tests, embedding).
    pub fn from_signing(signing: SigningIdentity) -> Identity {
        Identity { signing }
    }

    /// The user's address: SHA-256 of the public key.
    pub fn address(&self) -> Key256 {
        Key256(self.signing.public().address())
    }

    /// The Ed25519 public key as 64 hex characters.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.public().as_bytes())
    }

    /// The signing key, for signing storage requests.
    pub fn signing(&self) -> &SigningIdentity {
        &self.signing
    }

    /// The secret that roots the data encryption keys (never the signing secret itself).
    pub(crate) fn envelope_secret(&self) -> Zeroizing<[u8; 32]> {
        self.signing.envelope_secret()
    }
}

/// Writes `bytes` to a new file at `path`, mode 0600, and makes file and directory entry durable.
/// Missing parent directories are created with mode 0700.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ClientError::io(format!("creating {}", dir.display()), e))?;
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    ClientError::IdentityExists { path: path.to_owned() }
                }
                _ => ClientError::io(format!("creating {}", path.display()), e),
            },
        )?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Leave no half-written identity behind: a later `create` must be able to start over.
        let _ = fs::remove_file(path);
        return Err(ClientError::io(format!("writing {}", path.display()), e));
    }
    sync_dir(dir)
}

/// fsyncs a directory so a new or renamed entry in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ClientError::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::ErrorKind;

    const FAST: Argon2Params = Argon2Params::TEST_PARAMS;

    #[test]
    fn create_then_load_gives_the_same_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("identity");
        let created = Identity::create_with_params(&path, b"pw", FAST).unwrap();
        let loaded = Identity::load(&path, b"pw").unwrap();
        assert_eq!(created.address(), loaded.address());
        assert_eq!(created.public_key_hex(), loaded.public_key_hex());
        assert_eq!(created.public_key_hex().len(), 64);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn the_default_parameters_work_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let created = Identity::create(&path, b"correct horse").unwrap();
        assert_eq!(Identity::load(&path, b"correct horse").unwrap().address(), created.address());
    }

    #[test]
    fn a_wrong_passphrase_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        Identity::create_with_params(&path, b"right", FAST).unwrap();
        let e = Identity::load(&path, b"wrong").unwrap_err();
        assert!(matches!(e, ClientError::WrongPassphrase { .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Identity);
        assert!(e.to_string().contains("wrong passphrase"));
    }

    #[test]
    fn an_identity_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let first = Identity::create_with_params(&path, b"pw", FAST).unwrap();
        let e = Identity::create_with_params(&path, b"pw", FAST).unwrap_err();
        assert!(matches!(e, ClientError::IdentityExists { .. }), "{e}");
        assert_eq!(Identity::load(&path, b"pw").unwrap().address(), first.address());
    }

    #[test]
    fn missing_and_garbage_files_are_distinguished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        assert!(matches!(Identity::load(&path, b"pw"), Err(ClientError::NoIdentity { .. })));
        fs::write(&path, b"not a keystore, but long enough to have a header and a tag....")
            .unwrap();
        assert!(matches!(Identity::load(&path, b"pw"), Err(ClientError::BadIdentity { .. })));
    }

    #[test]
    fn the_passphrase_comes_from_the_file_first_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        fs::write(&file, b"from file\nsecond line\n").unwrap();
        let p = resolve_passphrase(Some(&file), Some(b"from env".to_vec())).unwrap();
        assert_eq!(p.as_slice(), b"from file");
        fs::write(&file, b"crlf\r\n").unwrap();
        assert_eq!(resolve_passphrase(Some(&file), None).unwrap().as_slice(), b"crlf");
        fs::write(&file, b"no newline").unwrap();
        assert_eq!(resolve_passphrase(Some(&file), None).unwrap().as_slice(), b"no newline");
        let p = resolve_passphrase(None, Some(b"from env".to_vec())).unwrap();
        assert_eq!(p.as_slice(), b"from env");
        assert!(matches!(resolve_passphrase(None, None), Err(ClientError::NoPassphrase)));
        assert!(matches!(resolve_passphrase(None, Some(vec![])), Err(ClientError::NoPassphrase)));
        fs::write(&file, b"\n").unwrap();
        assert!(matches!(
            resolve_passphrase(Some(&file), None),
            Err(ClientError::EmptyPassphrase { .. })
        ));
    }
}
