//! Server secrets kept in files: the token HMAC key and the JWT signing key.
//!
//! On first start a missing key file is created with mode 0600 (its directory 0700),
//! so the embedded default needs no setup; an existing one that others may read is
//! used, with a warning to make it private. Replicas must share the same token key:
//! give them the same file or `secrets.token_key`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;

use crate::config::Secrets;

/// Smallest accepted HMAC key.
const MIN_KEY_BYTES: usize = 32;

/// The token HMAC key from config or its key file (created when missing).
pub fn token_key(secrets: &Secrets) -> anyhow::Result<Vec<u8>> {
    if let Some(inline) = &secrets.token_key {
        return decode_key(inline.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "secrets.token_key: not a key of at least {MIN_KEY_BYTES} bytes in hex or base64; generate one with `openssl rand -hex 32`"
            )
        });
    }
    let path = &secrets.token_key_file;
    let text = read_or_create(path, || {
        let mut key = [0u8; MIN_KEY_BYTES];
        getrandom::getrandom(&mut key)?;
        Ok(format!("{}\n", crate::core::token::hex(&key)).into_bytes())
    })?;
    let text = String::from_utf8(text).unwrap_or_default();
    decode_key(text.trim()).ok_or_else(|| {
        anyhow::anyhow!(
            "secrets.token_key_file {}: not a key of at least {MIN_KEY_BYTES} bytes in hex or base64; remove it to have a new one created (existing tokens then stop working)",
            path.display()
        )
    })
}

/// The token HMAC key as `token_key` reads it, but never created: `None` when the key
/// file does not exist (the command line and `check-config` must not make one).
pub fn existing_token_key(secrets: &Secrets) -> anyhow::Result<Option<Vec<u8>>> {
    if secrets.token_key.is_none() && !secrets.token_key_file.exists() {
        return Ok(None);
    }
    token_key(secrets).map(Some)
}

/// The previous token keys (`secrets.previous_token_keys`), decoded.
pub fn previous_token_keys(secrets: &Secrets) -> anyhow::Result<Vec<Vec<u8>>> {
    secrets
        .previous_token_keys
        .iter()
        .enumerate()
        .map(|(i, text)| {
            decode_key(text.trim()).ok_or_else(|| {
                anyhow::anyhow!(
                    "secrets.previous_token_keys[{i}]: not a key of at least {MIN_KEY_BYTES} bytes in hex or base64"
                )
            })
        })
        .collect()
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    let bytes =
        decode_hex(text).or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())?;
    (bytes.len() >= MIN_KEY_BYTES).then_some(bytes)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The Ed25519 signing key for upstream JWTs as PKCS#8 DER, created when missing.
/// The file may also hold a PEM key (`openssl genpkey -algorithm ed25519`).
pub fn jwt_signing_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_or_create(path, || {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("could not generate an Ed25519 key"))?;
        Ok(pkcs8.as_ref().to_vec())
    })?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(bytes);
    }
    match rustls_pemfile::private_key(&mut bytes.as_slice()) {
        Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(key))) => Ok(key.secret_pkcs8_der().to_vec()),
        _ => anyhow::bail!(
            "upstream.identity.jwt.key_file {}: not a PKCS#8 PEM private key; make one with `openssl genpkey -algorithm ed25519`",
            path.display()
        ),
    }
}

/// Reads `path`, or creates it (mode 0600) with `make()`'s bytes. Two processes starting
/// at once agree on one file: the loser of `create_new` reads the winner's.
fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => {
            if let Some(mode) = crate::core::files::loose_mode(path) {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "key file can be read by other users of this machine; make it private: chmod 600 {}",
                    path.display()
                );
            }
            return Ok(bytes);
        }
        Ok(_) => anyhow::bail!(
            "key file {} is empty; remove it to have a new one created",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("key file {}: {e}", path.display()),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::core::files::create_private_dir(dir).map_err(|e| {
            anyhow::anyhow!("creating directory {} for key file: {e}", dir.display())
        })?;
    }
    let bytes = make()?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(&bytes)
                .and_then(|_| file.sync_all())
                .map_err(|e| anyhow::anyhow!("writing key file {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created key file");
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Give the other process a moment to finish writing.
            for _ in 0..50 {
                let existing = std::fs::read(path)?;
                if !existing.is_empty() {
                    return Ok(existing);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            anyhow::bail!("key file {} stayed empty", path.display())
        }
        Err(e) => anyhow::bail!("creating key file {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets {
            token_key: None,
            token_key_file: dir.path().join("sub/token.key"),
            previous_token_keys: Vec::new(),
        };
        let first = token_key(&secrets).unwrap();
        let second = token_key(&secrets).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        let mode = std::fs::metadata(&secrets.token_key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn openssl_pem_ed25519_keys_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.pem");
        let made = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&path)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            panic!("openssl is needed for this test");
        }
        let der = jwt_signing_key(&path).unwrap();
        assert!(ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).is_ok());
    }

    #[test]
    fn short_inline_key_is_refused() {
        let secrets = Secrets {
            token_key: Some("abcd".into()),
            token_key_file: "unused".into(),
            previous_token_keys: Vec::new(),
        };
        let err = token_key(&secrets).unwrap_err().to_string();
        assert!(err.contains("secrets.token_key"), "{err}");
        assert!(!err.contains("abcd"), "{err}");
    }
}
