//! The identity the gateway asserts to Deploy.
//!
//! Every request first loses any client-supplied copy of the identity headers, so no
//! client can claim to be someone. Only a token-authenticated request then gets the
//! identity set, per `upstream.identity.mode`:
//! - `header`: the username in `upstream.identity.header`;
//! - `jwt`: `Authorization: Bearer <JWT>` (see `jwt`: RS256, HS256 or EdDSA; public keys
//!   at `/patgate/.well-known/jwks.json`), plus the username header;
//! - `basic`: the service account's Basic credentials, plus the username header for audit.
//!
//! The optional shared secret header goes with every token-authenticated request.
//!
//! May import: `core`, `config`, `metrics`, `store`, `tokens`.

use std::sync::Arc;

use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

pub mod jwt;

use crate::config::{Identity, IdentityMode};
use crate::identity::jwt::JwtMinter;

/// Sets and strips the upstream identity.
pub struct UpstreamIdentity {
    mode: IdentityMode,
    header: HeaderName,
    shared_secret: Option<(HeaderName, HeaderValue)>,
    jwt: Option<Arc<JwtMinter>>,
    basic_authorization: Option<HeaderValue>,
}

impl UpstreamIdentity {
    /// Builds from config; `jwt` mints the JWTs in jwt mode.
    pub fn new(
        settings: &Identity,
        jwt: Option<Arc<JwtMinter>>,
    ) -> anyhow::Result<UpstreamIdentity> {
        let jwt = match (settings.mode, jwt) {
            (IdentityMode::Jwt, Some(minter)) => Some(minter),
            (IdentityMode::Jwt, None) => anyhow::bail!("jwt mode needs a signing key"),
            _ => None,
        };
        let basic_authorization = match (&settings.basic, settings.mode) {
            (Some(account), IdentityMode::Basic) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", account.username, account.password));
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        Ok(UpstreamIdentity {
            mode: settings.mode,
            header: settings.header.clone(),
            shared_secret: settings.shared_secret.clone(),
            jwt,
            basic_authorization,
        })
    }

    /// Whether a request header of this (lower-case) name is one of the identity
    /// headers, which only the gateway may set.
    pub fn is_identity_header(&self, name: &[u8]) -> bool {
        name == self.header.as_str().as_bytes()
            || self
                .shared_secret
                .as_ref()
                .is_some_and(|(secret, _)| name == secret.as_str().as_bytes())
    }

    /// Writes the identity header lines for `username` (`name: value\r\n`) straight
    /// into a request head, as [`Self::apply`] would set them. `Ok(false)` in jwt mode,
    /// which needs `apply`.
    pub fn write_lines(&self, out: &mut Vec<u8>, username: &str) -> anyhow::Result<bool> {
        // What HeaderValue accepts: no control characters but tab.
        if username
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            anyhow::bail!("username contains control characters");
        }
        let mut line = |name: &[u8], value: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        match self.mode {
            IdentityMode::Jwt => return Ok(false),
            IdentityMode::Header => {}
            IdentityMode::Basic => {
                let value = self
                    .basic_authorization
                    .as_ref()
                    .expect("basic mode has an account");
                line(b"authorization", value.as_bytes());
            }
        }
        line(self.header.as_str().as_bytes(), username.as_bytes());
        if let Some((name, value)) = &self.shared_secret {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
        Ok(true)
    }

    /// Asserts `username` (with `roles`, which only a JWT carries) to Deploy. The caller
    /// has removed the token already.
    pub async fn apply(
        &self,
        headers: &mut HeaderMap,
        username: &Arc<str>,
        roles: &[String],
    ) -> anyhow::Result<()> {
        // from_bytes admits UTF-8 (obs-text); only control characters are refused.
        let user_value = HeaderValue::from_bytes(username.as_bytes())
            .map_err(|_| anyhow::anyhow!("username contains control characters"))?;
        headers.insert(self.header.clone(), user_value);
        match self.mode {
            IdentityMode::Header => {}
            IdentityMode::Jwt => {
                let minter = self.jwt.as_ref().expect("jwt mode has a minter");
                headers.insert(AUTHORIZATION, minter.bearer(username, roles).await?);
            }
            IdentityMode::Basic => {
                let value = self
                    .basic_authorization
                    .clone()
                    .expect("basic mode has an account");
                headers.insert(AUTHORIZATION, value);
            }
        }
        if let Some((name, value)) = &self.shared_secret {
            headers.insert(name.clone(), value.clone());
        }
        Ok(())
    }

    /// The JWKS document (jwt mode only).
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.jwt.as_ref().and_then(|minter| minter.jwks())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtAlgorithm, JwtSettings};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::Ed25519KeyPair;
    use std::time::Duration;

    fn settings(mode: IdentityMode) -> Identity {
        Identity {
            mode,
            header: HeaderName::from_static("x-deploy-user"),
            shared_secret: None,
            jwt: JwtSettings {
                algorithm: JwtAlgorithm::EdDsa,
                issuer: "patgate".into(),
                audience: "deploy".into(),
                ttl: Duration::from_secs(300),
                key_file: "unused".into(),
                secret: None,
                username_claim: "preferred_username".into(),
                roles_claim: "groups".into(),
                default_roles: vec!["deployers".into()],
                user_roles: [("alice".to_string(), vec!["ops".to_string()])].into(),
                rotation_lead: Duration::from_secs(600),
                clock_skew: Duration::from_secs(60),
            },
            basic: None,
        }
    }

    #[test]
    fn a_username_that_could_break_the_head_is_never_written() {
        let identity = UpstreamIdentity::new(&settings(IdentityMode::Header), None).unwrap();
        for bad in [
            "eve\r\nx-deploy-user: admin",
            "eve\n",
            "eve\u{0}",
            "eve\u{7f}",
        ] {
            let mut out = Vec::new();
            assert!(identity.write_lines(&mut out, bad).is_err(), "{bad:?}");
            assert!(out.is_empty(), "{bad:?}");
        }
        // Spaces and tabs are allowed in header values, and in LDAP names.
        for good in ["Jane Doe", "jane\tdoe"] {
            let mut out = Vec::new();
            assert!(identity.write_lines(&mut out, good).unwrap());
            assert_eq!(out, format!("x-deploy-user: {good}\r\n").into_bytes());
        }
    }

    #[tokio::test]
    async fn written_lines_match_what_apply_sets() {
        let mut with_secret = settings(IdentityMode::Basic);
        with_secret.shared_secret = Some((
            HeaderName::from_static("x-patgate-secret"),
            HeaderValue::from_static("s3cret"),
        ));
        with_secret.basic = Some(crate::config::BasicAccount {
            username: "svc".into(),
            password: "pw".into(),
        });
        let mut header_mode = with_secret.clone();
        header_mode.mode = IdentityMode::Header;
        for settings in [with_secret, header_mode] {
            let identity = UpstreamIdentity::new(&settings, None).unwrap();
            let user: Arc<str> = Arc::from("alice");
            let mut applied = HeaderMap::new();
            identity.apply(&mut applied, &user, &[]).await.unwrap();
            let mut written = Vec::new();
            assert!(identity.write_lines(&mut written, &user).unwrap());
            let mut expected: Vec<String> = applied
                .iter()
                .map(|(n, v)| format!("{n}: {}\r\n", v.to_str().unwrap()))
                .collect();
            let mut lines: Vec<String> = String::from_utf8(written)
                .unwrap()
                .split_inclusive('\n')
                .map(str::to_string)
                .collect();
            expected.sort();
            lines.sort();
            assert_eq!(lines, expected, "{:?}", settings.mode);
            // A username no header may carry is refused by both.
            let bad: Arc<str> = Arc::from("al\nice");
            assert!(identity
                .apply(&mut HeaderMap::new(), &bad, &[])
                .await
                .is_err());
            assert!(identity.write_lines(&mut Vec::new(), &bad).is_err());
        }
        let jwt = settings(IdentityMode::Jwt);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let minter = JwtMinter::with_ed25519(&jwt.jwt, pkcs8.as_ref()).unwrap();
        let identity = UpstreamIdentity::new(&jwt, Some(Arc::new(minter))).unwrap();
        assert!(!identity.write_lines(&mut Vec::new(), "alice").unwrap());
    }

    #[tokio::test]
    async fn jwt_verifies_with_the_published_key_and_is_reused() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let jwt = settings(IdentityMode::Jwt);
        let minter = JwtMinter::with_ed25519(&jwt.jwt, pkcs8.as_ref()).unwrap();
        let identity = UpstreamIdentity::new(&jwt, Some(Arc::new(minter))).unwrap();
        let user: Arc<str> = "alice".into();
        let mut headers = HeaderMap::new();
        let sso_roles = vec!["dev".to_string(), "deployers".to_string()];
        identity
            .apply(&mut headers, &user, &sso_roles)
            .await
            .unwrap();
        let bearer = headers[AUTHORIZATION].to_str().unwrap().to_string();
        let jwt = bearer.strip_prefix("Bearer ").unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let jwks = identity.jwks().unwrap();
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, x);
        public
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(
            claims["groups"],
            serde_json::json!(["dev", "deployers", "ops"])
        );
        assert_eq!(claims["iss"], "patgate");
        assert_eq!(claims["aud"], "deploy");
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
        let now = crate::core::time::now();
        assert!(claims["exp"].as_i64().unwrap() - now <= 300);
        assert!(claims["nbf"].as_i64().unwrap() <= now);

        let mut again = HeaderMap::new();
        identity.apply(&mut again, &user, &sso_roles).await.unwrap();
        assert_eq!(again[AUTHORIZATION], headers[AUTHORIZATION], "reused");
        let mut changed = HeaderMap::new();
        identity.apply(&mut changed, &user, &[]).await.unwrap();
        assert_ne!(
            changed[AUTHORIZATION], headers[AUTHORIZATION],
            "new roles, new JWT"
        );
    }
}
