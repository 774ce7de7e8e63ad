//! JWTs that tell Deploy who a token's user is, in the form Deploy's OIDC
//! `access-token` settings accept: RS256 (default), HS256 or EdDSA, with the username
//! in `sub` and in the configured username claim, the roles in the configured roles
//! claim, and `iss`, `aud`, `iat`, `nbf`, `exp`, `jti`.
//!
//! Asymmetric keys live in the database (sealed), so every replica signs with the same
//! key and publishes the same JWKS. A rotation adds a key that is published at once and
//! signs from `not_before` on; the key it replaces stays published until every JWT it
//! signed has expired, then it is removed.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use moka::future::Cache;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};

use crate::config::{JwtAlgorithm, JwtSettings};
use crate::core::sealed::Sealer;
use crate::store::{Store, StoredKey};

/// Sealing context of signing keys.
const SEAL_CONTEXT: &str = "jwt-signing-key";

enum Signer {
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(ring::hmac::Key),
}

struct RingKey {
    kid: Option<String>,
    not_before: i64,
    jwk: Option<serde_json::Value>,
    signer: Signer,
}

/// Mints JWTs, reusing one per user (and roles) until two thirds of its life is gone.
pub struct JwtMinter {
    settings: JwtSettings,
    store: Option<Store>,
    sealer: Option<Arc<Sealer>>,
    keys: RwLock<Arc<Vec<RingKey>>>,
    minted: Cache<Arc<str>, Minted>,
}

#[derive(Clone)]
struct Minted {
    value: HeaderValue,
    exp: i64,
    roles: Arc<[String]>,
}

impl JwtMinter {
    /// Loads the shared keys (creating or importing the first one) and keeps them fresh.
    pub async fn start(
        settings: &JwtSettings,
        store: Store,
        sealer: Arc<Sealer>,
    ) -> anyhow::Result<Arc<JwtMinter>> {
        let minter = Arc::new(JwtMinter::bare(settings, Some(store), Some(sealer)));
        if settings.algorithm == JwtAlgorithm::Hs256 {
            let secret = settings.secret.as_deref().unwrap_or_default();
            minter.replace(vec![RingKey {
                kid: None,
                not_before: 0,
                jwk: None,
                signer: Signer::Hmac(ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    secret.as_bytes(),
                )),
            }]);
            return Ok(minter);
        }
        if minter.load().await?.is_empty() {
            let first = match std::fs::read(&settings.key_file) {
                Ok(bytes) => import(settings, &bytes)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(settings.algorithm)?,
                Err(e) => anyhow::bail!(
                    "upstream.identity.jwt.key_file {}: {e}",
                    settings.key_file.display()
                ),
            };
            minter.add(first, 0).await?;
        }
        minter.refresh().await?;
        let every =
            (settings.rotation_lead / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(keep_fresh(Arc::downgrade(&minter), every));
        Ok(minter)
    }

    fn bare(
        settings: &JwtSettings,
        store: Option<Store>,
        sealer: Option<Arc<Sealer>>,
    ) -> JwtMinter {
        JwtMinter {
            settings: settings.clone(),
            store,
            sealer,
            keys: RwLock::new(Arc::new(Vec::new())),
            minted: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.ttl)
                .build(),
        }
    }

    /// A minter with one Ed25519 key and no database (unit tests).
    #[cfg(test)]
    pub fn with_ed25519(settings: &JwtSettings, pkcs8: &[u8]) -> anyhow::Result<JwtMinter> {
        let minter = JwtMinter::bare(settings, None, None);
        minter.replace(vec![ring_key(JwtAlgorithm::EdDsa, pkcs8, 0)?]);
        Ok(minter)
    }

    fn replace(&self, keys: Vec<RingKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    fn current(&self) -> Arc<Vec<RingKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn load(&self) -> anyhow::Result<Vec<StoredKey>> {
        let store = self
            .store
            .as_ref()
            .expect("a minter with keys in the store");
        Ok(store.signing_keys(self.settings.algorithm.as_str()).await?)
    }

    /// Seals and stores a new key that signs from `not_before`.
    async fn add(&self, pkcs8: Vec<u8>, not_before: i64) -> anyhow::Result<StoredKey> {
        let store = self
            .store
            .as_ref()
            .expect("a minter with keys in the store");
        let sealer = self.sealer.as_ref().expect("a minter with a sealer");
        let key = ring_key(self.settings.algorithm, &pkcs8, not_before)?;
        let stored = StoredKey {
            kid: key.kid.clone().unwrap_or_default(),
            alg: self.settings.algorithm.as_str().to_string(),
            sealed_key: sealer.seal(&pkcs8, SEAL_CONTEXT),
            public_jwk: key.jwk.clone().unwrap_or_default(),
            not_before,
        };
        store.add_signing_key(&stored).await?;
        Ok(stored)
    }

    /// Re-reads the shared keys, and removes those whose last JWT has expired.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let sealer = self.sealer.as_ref().expect("a minter with a sealer");
        let now = crate::core::time::now();
        let stored = self.load().await?;
        let mut keys = Vec::with_capacity(stored.len());
        for (i, key) in stored.iter().enumerate() {
            let superseded = stored
                .get(i + 1)
                .map(|next| next.not_before)
                .filter(|at| *at <= now);
            if superseded.is_some_and(|at| at + self.published_after() < now) {
                if let Some(store) = &self.store {
                    store.remove_signing_key(&key.kid).await?;
                }
                continue;
            }
            let pkcs8 = sealer
                .open(&key.sealed_key, SEAL_CONTEXT)
                .map_err(|e| anyhow::anyhow!("JWT signing key {}: {e}", key.kid))?;
            if sealer.is_stale(&key.sealed_key) {
                // Still readable under a previous token key: keep it readable once that
                // key is retired.
                if let Some(store) = &self.store {
                    store
                        .reseal_signing_key(&key.kid, &sealer.seal(&pkcs8, SEAL_CONTEXT))
                        .await?;
                }
            }
            keys.push(ring_key(self.settings.algorithm, &pkcs8, key.not_before)?);
        }
        if keys.is_empty() {
            anyhow::bail!(
                "no JWT signing key in the database for {}",
                self.settings.algorithm.as_str()
            );
        }
        self.replace(keys);
        Ok(())
    }

    fn lifetime(&self) -> i64 {
        self.settings.ttl.as_secs() as i64
    }

    /// How long a replaced key stays published: its last JWT's life plus Deploy's
    /// clock skew allowance.
    pub fn published_after(&self) -> i64 {
        self.lifetime() + self.settings.clock_skew.as_secs() as i64
    }

    /// Adds the next key: published now, signing once `rotation_lead` has passed.
    pub async fn rotate(&self) -> anyhow::Result<StoredKey> {
        let not_before = crate::core::time::now() + self.settings.rotation_lead.as_secs() as i64;
        let added = self
            .add(generate(self.settings.algorithm)?, not_before)
            .await?;
        self.refresh().await?;
        Ok(added)
    }

    /// `Authorization: Bearer <JWT>` for a user with these roles.
    pub async fn bearer(
        &self,
        username: &Arc<str>,
        roles: &[String],
    ) -> anyhow::Result<HeaderValue> {
        let now = crate::core::time::now();
        let roles = self.roles_for(username, roles);
        let keys = self.current();
        let signing = signing_key(&keys, now);
        let keep = self.lifetime() / 3;
        if let Some(minted) = self.minted.get(username).await {
            if minted.exp - now > keep
                && minted.roles == roles
                && signing.is_none_or(|k| k.not_before <= minted.exp - self.lifetime())
            {
                return Ok(minted.value);
            }
        }
        let key = signing.ok_or_else(|| anyhow::anyhow!("no JWT signing key"))?;
        let exp = now + self.lifetime();
        let mut header = serde_json::json!({"alg": self.settings.algorithm.as_str(), "typ": "JWT"});
        if let Some(kid) = &key.kid {
            header["kid"] = kid.clone().into();
        }
        let mut claims = serde_json::json!({
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": &**username,
            "iat": now,
            "nbf": now - 5,
            "exp": exp,
            "jti": crate::core::text::random_text(16),
        });
        claims[&self.settings.username_claim] = (&**username).into();
        claims[&self.settings.roles_claim] = roles.iter().cloned().collect::<Vec<_>>().into();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = sign(&key.signer, input.as_bytes())?;
        let mut value = HeaderValue::from_str(&format!(
            "Bearer {input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))?;
        value.set_sensitive(true);
        self.minted
            .insert(
                username.clone(),
                Minted {
                    value: value.clone(),
                    exp,
                    roles,
                },
            )
            .await;
        Ok(value)
    }

    /// The user's roles from SSO, then the configured ones for everybody and for them.
    fn roles_for(&self, username: &str, from_sso: &[String]) -> Arc<[String]> {
        let mut roles: Vec<String> = Vec::new();
        let configured = self.settings.user_roles.get(username).into_iter().flatten();
        for role in from_sso
            .iter()
            .chain(&self.settings.default_roles)
            .chain(configured)
        {
            if !roles.contains(role) {
                roles.push(role.clone());
            }
        }
        roles.into()
    }

    /// The published keys: the one signing, the next ones, and replaced ones until
    /// their last JWT has expired. `None` for HS256 (a shared secret has no public key).
    pub fn jwks(&self) -> Option<serde_json::Value> {
        let now = crate::core::time::now();
        let keys = self.current();
        if keys.iter().all(|k| k.jwk.is_none()) {
            return None;
        }
        let published: Vec<serde_json::Value> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let superseded = keys
                    .get(i + 1)
                    .map(|next| next.not_before)
                    .filter(|at| *at <= now);
                superseded.is_none_or(|at| at + self.published_after() >= now)
            })
            .filter_map(|(_, k)| k.jwk.clone())
            .collect();
        Some(serde_json::json!({ "keys": published }))
    }

    /// The key id that signs now, for messages.
    pub fn signing_kid(&self) -> Option<String> {
        signing_key(&self.current(), crate::core::time::now()).and_then(|k| k.kid.clone())
    }

    /// Every stored key with when it signs, for `patgate jwt-key list`.
    pub fn describe(&self) -> Vec<(String, i64)> {
        self.current()
            .iter()
            .map(|k| (k.kid.clone().unwrap_or_default(), k.not_before))
            .collect()
    }
}

async fn keep_fresh(minter: Weak<JwtMinter>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(minter) = minter.upgrade() else {
            return;
        };
        if let Err(e) = minter.refresh().await {
            tracing::warn!(error = %e, "could not refresh the JWT signing keys");
        }
    }
}

/// The newest key whose `not_before` has come (keys are sorted by it).
fn signing_key(keys: &[RingKey], now: i64) -> Option<&RingKey> {
    keys.iter()
        .rev()
        .find(|k| k.not_before <= now)
        .or_else(|| keys.first())
}

fn sign(signer: &Signer, input: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(match signer {
        Signer::Rsa(key) => {
            let mut signature = vec![0u8; key.public().modulus_len()];
            key.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input,
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
            signature
        }
        Signer::Ed(key) => key.sign(input).as_ref().to_vec(),
        Signer::Hmac(key) => ring::hmac::sign(key, input).as_ref().to_vec(),
    })
}

/// A new PKCS#8 private key for `algorithm`.
pub fn generate(algorithm: JwtAlgorithm) -> anyhow::Result<Vec<u8>> {
    match algorithm {
        JwtAlgorithm::Rs256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
            Ok(key.to_pkcs8_der()?.as_bytes().to_vec())
        }
        JwtAlgorithm::EdDsa => Ok(
            Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("could not generate an Ed25519 key"))?
                .as_ref()
                .to_vec(),
        ),
        JwtAlgorithm::Hs256 => anyhow::bail!("HS256 uses upstream.identity.jwt.secret, not a key"),
    }
}

/// Checks `upstream.identity.jwt.key_file` as the first start would import it; `false`
/// when there is no such file (a key is then generated).
pub fn check_key_file(settings: &JwtSettings) -> anyhow::Result<bool> {
    match std::fs::read(&settings.key_file) {
        Ok(bytes) => import(settings, &bytes).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => anyhow::bail!(
            "upstream.identity.jwt.key_file {}: {e}",
            settings.key_file.display()
        ),
    }
}

/// A key file's PKCS#8 key (PEM or DER), checked against the algorithm.
fn import(settings: &JwtSettings, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        match rustls_pemfile::private_key(&mut &bytes[..]) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(key))) => {
                key.secret_pkcs8_der().to_vec()
            }
            _ => anyhow::bail!(
                "upstream.identity.jwt.key_file {}: not a PKCS#8 PEM private key",
                settings.key_file.display()
            ),
        }
    } else {
        bytes.to_vec()
    };
    ring_key(settings.algorithm, &der, 0).map_err(|e| {
        anyhow::anyhow!(
            "upstream.identity.jwt.key_file {}: {e}; it must hold an {} key, or remove it to have one created",
            settings.key_file.display(),
            settings.algorithm.as_str()
        )
    })?;
    Ok(der)
}

fn ring_key(algorithm: JwtAlgorithm, pkcs8: &[u8], not_before: i64) -> anyhow::Result<RingKey> {
    let (signer, jwk) = match algorithm {
        JwtAlgorithm::Rs256 => {
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::traits::PublicKeyParts;
            let parsed = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8)
                .map_err(|_| anyhow::anyhow!("not an RSA PKCS#8 key"))?;
            if parsed.size() < 256 {
                anyhow::bail!("RSA keys must have at least 2048 bits");
            }
            let key = RsaKeyPair::from_pkcs8(pkcs8)
                .map_err(|e| anyhow::anyhow!("unusable RSA key: {e}"))?;
            let jwk = serde_json::json!({
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "n": URL_SAFE_NO_PAD.encode(parsed.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(parsed.e().to_bytes_be()),
            });
            (Signer::Rsa(key), jwk)
        }
        JwtAlgorithm::EdDsa => {
            // Accepts PKCS#8 v1 too, as `openssl genpkey -algorithm ed25519` writes it.
            let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 key"))?;
            let jwk = serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
            });
            (Signer::Ed(key), jwk)
        }
        JwtAlgorithm::Hs256 => anyhow::bail!("HS256 has no key pair"),
    };
    let kid = thumbprint(&jwk);
    let mut jwk = jwk;
    jwk["kid"] = kid.clone().into();
    Ok(RingKey {
        kid: Some(kid),
        not_before,
        jwk: Some(jwk),
        signer,
    })
}

/// A key id from the public key (RFC 7638 thumbprint, shortened).
fn thumbprint(jwk: &serde_json::Value) -> String {
    use sha2::Digest;
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, jwk["e"], jwk["n"]),
        _ => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, jwk["x"]),
    };
    URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(canonical.as_bytes())[..16])
}
