//! Verifying a CI system's identity token (a JWS in compact form) against its issuer's
//! keys: the signature with an algorithm from a fixed allowlist, never `none` and never
//! an HMAC (a public key is no secret), and a key whose type fits the algorithm, so
//! that no key can be used as another kind.

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

/// The algorithms an identity token may be signed with. GitHub, GitLab, Jenkins'
/// OIDC provider and Kubernetes sign with RS256.
pub const ALGORITHMS: [&str; 5] = ["RS256", "RS384", "RS512", "ES256", "EdDSA"];

/// Longest identity token read; GitHub's are about 1.2 KB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A public key from a JWKS document (RFC 7517), as far as verification needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// The parts of a compact JWS, decoded but not yet trusted.
#[derive(Debug)]
pub struct Unverified {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

fn b64(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// Splits and decodes a compact JWS; says what is wrong in words fit for the caller.
pub fn parse(token: &str) -> Result<Unverified, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the identity token is longer than {} KiB",
            MAX_TOKEN_BYTES / 1024
        ));
    }
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the identity token is not a JWT (three base64url parts)".into());
    };
    let header: serde_json::Value = b64(head)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the identity token's header is not base64url JSON")?;
    let alg = header["alg"].as_str().unwrap_or_default().to_string();
    if !ALGORITHMS.contains(&alg.as_str()) {
        return Err(format!(
            "the identity token is signed with {alg:?}; accepted: {}",
            ALGORITHMS.join(", ")
        ));
    }
    if header.get("kid").is_some_and(|kid| !kid.is_string()) {
        return Err("the identity token's kid is not a string".into());
    }
    if header.get("crit").is_some() {
        return Err("the identity token names critical header parameters (crit)".into());
    }
    let claims = b64(body)
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| match v {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        })
        .ok_or("the identity token's claims are not a base64url JSON object")?;
    let signature = b64(sig).ok_or("the identity token's signature is not base64url")?;
    Ok(Unverified {
        alg,
        kid: header["kid"].as_str().map(str::to_string),
        claims,
        signed: format!("{head}.{body}").into_bytes(),
        signature,
    })
}

impl Jwk {
    /// Whether this key may verify `alg` at all (type, curve, declared alg and use).
    pub fn fits(&self, alg: &str) -> bool {
        if self.usage.as_deref().is_some_and(|u| u != "sig") {
            return false;
        }
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return false;
        }
        match alg {
            "RS256" | "RS384" | "RS512" => self.kty == "RSA",
            "ES256" => self.kty == "EC" && self.crv.as_deref() == Some("P-256"),
            "EdDSA" => self.kty == "OKP" && self.crv.as_deref() == Some("Ed25519"),
            _ => false,
        }
    }

    /// Checks `signature` over `signed` with this key.
    fn verifies(&self, alg: &str, signed: &[u8], sig: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        let field = |v: &Option<String>| v.as_deref().and_then(b64);
        match alg {
            "RS256" | "RS384" | "RS512" => {
                let (Some(n), Some(e)) = (field(&self.n), field(&self.e)) else {
                    return false;
                };
                let params = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA512,
                };
                signature::RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(params, signed, sig)
                    .is_ok()
            }
            "ES256" => {
                let (Some(x), Some(y)) = (field(&self.x), field(&self.y)) else {
                    return false;
                };
                if x.len() != 32 || y.len() != 32 {
                    return false;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, sig)
                    .is_ok()
            }
            "EdDSA" => {
                let Some(x) = field(&self.x) else {
                    return false;
                };
                UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(signed, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

impl Unverified {
    /// Whether one of `keys` (the one the token names, or any that fits when it names
    /// none) signed it.
    pub fn verified_by(&self, keys: &[Jwk]) -> bool {
        keys.iter()
            .filter(|k| match (&self.kid, &k.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .any(|k| k.verifies(&self.alg, &self.signed, &self.signature))
    }

    /// Whether `keys` hold the key the token names (or a fitting one when it names none).
    pub fn key_known(&self, keys: &[Jwk]) -> bool {
        keys.iter().any(|k| {
            k.fits(&self.alg)
                && match &self.kid {
                    Some(wanted) => k.kid.as_deref() == Some(wanted.as_str()),
                    None => true,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn only_the_allowed_algorithms_are_read() {
        for alg in ["none", "HS256", "RS1", ""] {
            let token = format!(
                "{}.{}.",
                encode(&serde_json::json!({"alg": alg})),
                encode(&serde_json::json!({"iss": "x"}))
            );
            let err = parse(&token).unwrap_err();
            assert!(err.contains("accepted: RS256"), "{alg}: {err}");
        }
        assert!(parse("a.b").is_err());
        let numbered = format!(
            "{}.{}.",
            encode(&serde_json::json!({"alg": "RS256", "kid": 7})),
            encode(&serde_json::json!({"iss": "x"}))
        );
        assert!(parse(&numbered)
            .unwrap_err()
            .contains("kid is not a string"));
        assert!(parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    #[test]
    fn an_ed25519_signature_verifies_with_its_key_only() {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let head = encode(&serde_json::json!({"alg": "EdDSA", "kid": "k1"}));
        let body = encode(&serde_json::json!({"iss": "https://ci.example"}));
        let sig = pair.sign(format!("{head}.{body}").as_bytes());
        let token = format!(
            "{head}.{body}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
        );
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key());
        let key: Jwk = serde_json::from_value(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": x}),
        )
        .unwrap();
        let parsed = parse(&token).unwrap();
        assert!(parsed.verified_by(std::slice::from_ref(&key)));
        let mut other = key.clone();
        other.kid = Some("k2".into());
        assert!(!parsed.verified_by(&[other]));
        let mut rsa = key;
        rsa.kty = "RSA".into();
        assert!(
            !parsed.verified_by(&[rsa]),
            "a key of another type never verifies"
        );
    }
}
