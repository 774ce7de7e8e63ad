//! The `upstream.identity.jwt` section: how the JWTs that tell Deploy who the user is
//! are signed and what they claim, matching Deploy's OIDC `access-token` settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, ListOrText};
use super::ConfigError;

/// Signing algorithms Deploy's `jwsAlg` can be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// RSA 2048+ with SHA-256: the one Deploy documents; the default.
    Rs256,
    /// HMAC-SHA256 with a secret Deploy shares (`secretKey`); no JWKS.
    Hs256,
    /// Ed25519.
    EdDsa,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }
}

#[derive(Clone)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    /// A key to import at first start (PKCS#8, PEM or DER); signing keys then live in
    /// the database, shared by every replica.
    pub key_file: PathBuf,
    /// HS256 only: the secret shared with Deploy.
    pub secret: Option<String>,
    /// The claim that carries the username (Deploy's `userNameClaimName`); `sub`
    /// carries it too.
    pub username_claim: String,
    /// The claim that carries the roles (Deploy's `rolesClaimName`).
    pub roles_claim: String,
    /// Roles every token user's JWT carries.
    pub default_roles: Vec<String>,
    /// Roles per username, added to those.
    pub user_roles: BTreeMap<String, Vec<String>>,
    /// How long a new signing key is published before it signs (`patgate jwt-key
    /// rotate`), so that Deploy has fetched it by then.
    pub rotation_lead: Duration,
    /// How long past expiry Deploy may still accept a JWT (its clock skew allowance):
    /// a replaced key stays published that much longer.
    pub clock_skew: Duration,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawJwt {
    algorithm: String,
    issuer: String,
    audience: String,
    ttl: String,
    key_file: String,
    secret: String,
    username_claim: String,
    roles_claim: String,
    default_roles: ListOrText,
    user_roles: BTreeMap<String, ListOrText>,
    rotation_lead: String,
    clock_skew: String,
}

impl Default for RawJwt {
    fn default() -> Self {
        RawJwt {
            algorithm: "RS256".into(),
            issuer: "patgate".into(),
            audience: "deploy".into(),
            ttl: "5m".into(),
            key_file: "data/jwt-signing.key".into(),
            secret: String::new(),
            username_claim: "preferred_username".into(),
            roles_claim: "groups".into(),
            default_roles: ListOrText::Empty,
            user_roles: BTreeMap::new(),
            rotation_lead: "10m".into(),
            clock_skew: "60s".into(),
        }
    }
}

impl RawJwt {
    /// Validates; `in_use` is whether the identity mode is `jwt`.
    pub(super) fn validate(self, in_use: bool) -> Result<JwtSettings, ConfigError> {
        let algorithm = match self.algorithm.to_ascii_uppercase().as_str() {
            "RS256" => JwtAlgorithm::Rs256,
            "HS256" => JwtAlgorithm::Hs256,
            "EDDSA" => JwtAlgorithm::EdDsa,
            _ => {
                return Err(ConfigError::key(
                    "upstream.identity.jwt.algorithm",
                    &self.algorithm,
                    "use RS256 (Deploy's documented choice), HS256 or EdDSA",
                ))
            }
        };
        let ttl = duration("upstream.identity.jwt.ttl", &self.ttl)?;
        if ttl > Duration::from_secs(300) || ttl < Duration::from_secs(30) {
            return Err(ConfigError::key(
                "upstream.identity.jwt.ttl",
                &self.ttl,
                "must be between 30s and 5m",
            ));
        }
        let secret = (!self.secret.is_empty()).then_some(self.secret);
        if in_use
            && algorithm == JwtAlgorithm::Hs256
            && secret.as_ref().is_none_or(|s| s.len() < 32)
        {
            return Err(ConfigError(
                "upstream.identity.jwt.secret: HS256 needs a secret of at least 32 characters, the same as Deploy's access-token secretKey; generate one with `openssl rand -hex 32`".into(),
            ));
        }
        for (key, value) in [
            ("upstream.identity.jwt.username_claim", &self.username_claim),
            ("upstream.identity.jwt.roles_claim", &self.roles_claim),
        ] {
            const RESERVED: [&str; 7] = ["iss", "aud", "exp", "nbf", "iat", "jti", "sub"];
            if value.trim().is_empty() || (RESERVED.contains(&value.as_str()) && value != "sub") {
                return Err(ConfigError::key(
                    key,
                    value,
                    "name a claim other than iss, aud, exp, nbf, iat and jti",
                ));
            }
        }
        if self.roles_claim == "sub" || self.roles_claim == self.username_claim {
            return Err(ConfigError::key(
                "upstream.identity.jwt.roles_claim",
                &self.roles_claim,
                "must differ from sub and from username_claim",
            ));
        }
        let rotation_lead = duration("upstream.identity.jwt.rotation_lead", &self.rotation_lead)?;
        Ok(JwtSettings {
            algorithm,
            issuer: self.issuer,
            audience: self.audience,
            ttl,
            key_file: PathBuf::from(self.key_file),
            secret,
            username_claim: self.username_claim,
            roles_claim: self.roles_claim,
            default_roles: self.default_roles.into_vec(),
            user_roles: self
                .user_roles
                .into_iter()
                .map(|(user, roles)| (user, roles.into_vec()))
                .collect(),
            rotation_lead,
            clock_skew: duration("upstream.identity.jwt.clock_skew", &self.clock_skew)?,
        })
    }
}
