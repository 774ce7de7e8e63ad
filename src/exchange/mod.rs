//! The CI token exchange: a pipeline trades the identity token its CI system issued
//! (GitHub Actions, GitLab CI, Jenkins, a Kubernetes service account) for a gateway
//! token that lives minutes, under a trust policy an administrator wrote: the issuer,
//! the audience, conditions on the token's claims, and what a match grants (the user,
//! scope, address allowlist and lifetime). No secret is stored in the CI system.
//!
//! The identity token is verified completely ([`jwt`] for the signature, [`keys`] for
//! the issuer's keys), each `jti` is accepted once, and the token issued is an ordinary
//! gateway token that cannot be rotated and is never sent an expiry e-mail.
//!
//! May import: `core`, `config`, `store`, `tokens`, `signin` (its HTTP client).

pub mod jwt;
pub mod keys;

use std::collections::BTreeMap;

use crate::core::scope::Scope;
use crate::core::token::{PlainToken, TokenHasher};
use crate::store::{AuditEvent, Store, TokenRecord, TrustPolicyRecord, UserSource};

/// RFC 8693's grant type and token types.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ISSUED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The lifetime when a policy names none, and the longest one may name.
pub const DEFAULT_LIFETIME_SECS: i64 = 15 * 60;
pub const MAX_LIFETIME_SECS: i64 = 3600;
const MIN_LIFETIME_SECS: i64 = 60;
/// How far ahead an identity token's times may lie.
const MAX_TOKEN_AGE: i64 = 24 * 3600;
/// At most this many claim conditions per policy.
const MAX_CONDITIONS: usize = 20;

/// Ready-made issuers: `preset` fills in `issuer`, and says which claims identify a job.
pub const PRESETS: [(&str, &str, &[&str]); 2] = [
    (
        "github",
        "https://token.actions.githubusercontent.com",
        &[
            "repository",
            "repository_owner",
            "ref",
            "environment",
            "workflow_ref",
            "sub",
        ],
    ),
    (
        "gitlab",
        "https://gitlab.com",
        &[
            "project_path",
            "namespace_path",
            "ref",
            "ref_protected",
            "environment",
            "sub",
        ],
    ),
];

/// Claims that say whose job it is, per preset issuer: on a public CI service anyone can
/// run a job, so a policy for one must pin one of these to an owner.
const OWNER_CLAIMS: [(&str, &[&str]); 2] = [
    (
        "https://token.actions.githubusercontent.com",
        &[
            "repository",
            "repository_owner",
            "repository_id",
            "repository_owner_id",
            "sub",
        ],
    ),
    (
        "https://gitlab.com",
        &[
            "project_path",
            "namespace_path",
            "project_id",
            "namespace_id",
            "sub",
        ],
    ),
];

/// Whether a pattern pins an owner: no wildcard at all, or a literal part before the
/// first wildcard that ends a path segment (`octo-org/*`, `repo:octo-org/app:*`), so that
/// `octo-org*` (which `octo-org-evil/x` matches) does not count.
fn pins_owner(pattern: &str) -> bool {
    match pattern.find(['*', '?']) {
        None => true,
        Some(at) => {
            let literal = &pattern[..at];
            literal.contains('/') && literal.ends_with(['/', ':'])
        }
    }
}

/// The issuer of a preset.
pub fn preset_issuer(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(preset, _, _)| *preset == name)
        .map(|(_, issuer, _)| *issuer)
}

/// A glob: `*` is any run of characters (`/` included), `?` one character; everything
/// else is itself. Character classes and braces are refused, so that nobody writes
/// `[abc]` and gets a literal match.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    if pattern.chars().count() > 500 {
        return Err("is longer than 500 characters".into());
    }
    if let Some(c) = pattern.chars().find(|c| "[]{}\\".contains(*c)) {
        return Err(format!(
            "contains {c:?}: only * (any characters) and ? (one character) are wildcards"
        ));
    }
    if pattern.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Whether `text` matches `pattern` (see [`check_glob`]).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A claim's value as a condition sees it: strings as they are, other values as JSON.
fn claim_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks the fields of a policy as written; the message names the field.
pub fn check_policy(p: &TrustPolicyRecord) -> Result<(), String> {
    crate::tokens::issue::check_name("name", &p.name)?;
    if p.name.contains('/') {
        return Err("name must not contain /".into());
    }
    keys::fetchable(&p.issuer).map_err(|e| format!("issuer: {e}"))?;
    if p.audience.trim().is_empty() {
        return Err("audience must not be empty: the aud claim the CI system is asked for".into());
    }
    if p.claims.is_empty() {
        return Err(
            "claims must name at least one condition (for GitHub, repository; for GitLab, project_path): \
             without one, every pipeline of the issuer would match"
                .into(),
        );
    }
    if p.claims.len() > MAX_CONDITIONS {
        return Err(format!("claims: at most {MAX_CONDITIONS} conditions"));
    }
    for (claim, pattern) in &p.claims {
        if claim.is_empty() {
            return Err("claims: a claim name must not be empty".into());
        }
        if ["iss", "aud", "exp", "nbf", "iat", "jti"].contains(&claim.as_str()) {
            return Err(format!(
                "claims.{claim}: checked by the gateway itself; set issuer and audience instead"
            ));
        }
        check_glob(pattern).map_err(|e| format!("claims.{claim}: the pattern {e}"))?;
    }
    if p.claims
        .values()
        .all(|pattern| pattern.chars().all(|c| c == '*' || c == '?'))
    {
        return Err("claims: at least one condition must name a value, not only wildcards".into());
    }
    if let Some((_, owners)) = OWNER_CLAIMS
        .iter()
        .find(|(issuer, _)| p.issuer.trim_end_matches('/') == *issuer)
    {
        let pinned = p
            .claims
            .iter()
            .any(|(claim, pattern)| owners.contains(&claim.as_str()) && pins_owner(pattern));
        if !pinned {
            return Err(format!(
                "claims: anyone can run jobs at {}; pin the owner with one of {} (exact, or up to a / such as octo-org/*)",
                p.issuer,
                owners.join(", ")
            ));
        }
    }
    crate::tokens::issue::check_name("user", &p.username)?;
    crate::tokens::rules::parse_allowlist(&p.allowed_addresses)
        .map_err(|e| format!("allowed_addresses: {e}"))?;
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&p.lifetime_seconds) {
        return Err(format!(
            "lifetime: from 1m to 1h ({} s given)",
            p.lifetime_seconds
        ));
    }
    Ok(())
}

/// Parses a lifetime such as `15m`, from 1 minute to 1 hour.
pub fn parse_lifetime(text: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("lifetime {text:?}: {e}; write a duration such as 15m or 1h"))?;
    let secs = d.as_secs() as i64;
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&secs) {
        return Err(format!("lifetime {text:?}: from 1m to 1h"));
    }
    Ok(secs)
}

/// A refusal in RFC 6749 / RFC 8693 terms.
#[derive(Debug)]
pub struct Refusal {
    pub status: http::StatusCode,
    /// `invalid_request`, `invalid_grant`, `invalid_target`, `unsupported_grant_type`,
    /// `temporarily_unavailable`.
    pub error: &'static str,
    pub description: String,
}

impl Refusal {
    pub fn new(error: &'static str, description: impl Into<String>) -> Refusal {
        let status = match error {
            "temporarily_unavailable" => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::BAD_REQUEST,
        };
        Refusal {
            status,
            error,
            description: description.into(),
        }
    }
}

/// What an exchange issued.
pub struct Exchanged {
    pub token: PlainToken,
    pub record: TokenRecord,
    pub policy: String,
    pub lifetime_seconds: i64,
}

/// Exchanges against the store's policies and the issuers' keys.
pub struct Exchanger {
    store: Store,
    hasher: TokenHasher,
    keys: keys::IssuerKeys,
    skew: i64,
}

impl Exchanger {
    pub fn new(
        config: &crate::config::Exchange,
        store: Store,
        hasher: TokenHasher,
    ) -> anyhow::Result<Exchanger> {
        Ok(Exchanger {
            store,
            hasher,
            keys: keys::IssuerKeys::new(config)?,
            skew: config.clock_skew.as_secs() as i64,
        })
    }

    /// Checks `subject_token` and issues a token under the policy it matches
    /// (`wanted`, when the caller names one as RFC 8693's `audience`).
    pub async fn exchange(
        &self,
        subject_token: &str,
        wanted: Option<&str>,
        client_ip: Option<String>,
    ) -> Result<Exchanged, Refusal> {
        let grant = |m: String| Refusal::new("invalid_grant", m);
        if subject_token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(Refusal::new(
                "invalid_request",
                format!(
                    "subject_token is longer than {} KiB",
                    jwt::MAX_TOKEN_BYTES / 1024
                ),
            ));
        }
        let token = jwt::parse(subject_token.trim()).map_err(grant)?;
        let issuer = token
            .claims
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or_else(|| grant("the identity token has no iss claim".into()))?
            .to_string();
        let store_down = |_| {
            Refusal::new(
                "temporarily_unavailable",
                "the gateway's database could not be reached; try again",
            )
        };
        // Only issuers an administrator trusts are ever fetched.
        let mut policies = self
            .store
            .trust_policies_of(&issuer)
            .await
            .map_err(store_down)?;
        if policies.is_empty() {
            return Err(grant(format!(
                "no trust policy accepts tokens of issuer {issuer}"
            )));
        }
        let keys = self
            .keys
            .for_token(&issuer, &token)
            .await
            .map_err(|e| match e {
                keys::KeyError::Unavailable(m) => Refusal::new("temporarily_unavailable", m),
                keys::KeyError::UnknownKey(m) => grant(m),
            })?;
        if !token.verified_by(&keys) {
            return Err(grant(format!(
                "the identity token's signature does not verify with the keys of {issuer}"
            )));
        }
        // Which policies exist is said only to a caller whose token the issuer signed.
        if let Some(name) = wanted {
            policies.retain(|p| p.name == name);
            if policies.is_empty() {
                return Err(Refusal::new(
                    "invalid_target",
                    format!("no trust policy {name:?} for this issuer"),
                ));
            }
        }
        let now = crate::core::time::now();
        let exp = self.times(&token.claims, now).map_err(grant)?;
        let jti = token
            .claims
            .get("jti")
            .and_then(|v| v.as_str())
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| grant("the identity token has no jti claim".into()))?
            .to_string();
        let audiences = match token.claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let policy = choose(&policies, &audiences, &token.claims).map_err(grant)?;
        let first = self
            .store
            .first_use_of_identity_token(&issuer, &jti, exp + self.skew, now)
            .await
            .map_err(store_down)?;
        if !first {
            return Err(grant(format!(
                "this identity token (jti {jti:?}) was exchanged already; ask the CI system for a new one"
            )));
        }
        let issued = match self.issue(policy, now).await {
            Ok(issued) => issued,
            Err(refusal) => {
                // Nothing was issued: the identity token may be tried again.
                let _ = self.store.forget_identity_token(&issuer, &jti).await;
                return Err(refusal);
            }
        };
        let matched: BTreeMap<&String, String> = policy
            .claims
            .keys()
            .filter_map(|c| token.claims.get(c).map(|v| (c, claim_text(v))))
            .collect();
        let _ = self.store.count_exchange(&policy.name, now).await;
        self.store
            .audit_or_log(AuditEvent {
                actor: Some(format!("exchange:{}", policy.name)),
                action: "token.exchanged",
                username: Some(policy.username.clone()),
                token_id: Some(issued.record.id.clone()),
                ip: client_ip,
                detail: Some(serde_json::json!({
                    "policy": policy.name,
                    "issuer": issuer,
                    "subject": token.claims.get("sub").map(claim_text),
                    "claims": matched,
                    "jti": jti,
                    "expires_in": policy.lifetime_seconds,
                })),
            })
            .await;
        Ok(issued)
    }

    /// `exp` (required), `nbf` and `iat` against the clock, with the configured skew;
    /// returns `exp`.
    fn times(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> Result<i64, String> {
        // Whole seconds within a day of now: an identity token lives minutes or hours,
        // and nothing further off can be compared without overflow.
        let number = |name: &str| -> Result<Option<i64>, String> {
            let Some(v) = claims.get(name) else {
                return Ok(None);
            };
            let f = v
                .as_f64()
                .ok_or(format!("the identity token's {name} claim is not a number"))?;
            if f.fract() != 0.0 || !(0.0..=(now + MAX_TOKEN_AGE) as f64).contains(&f) {
                return Err(format!(
                    "the identity token's {name} claim is not a time within a day of now"
                ));
            }
            Ok(Some(f as i64))
        };
        let exp = number("exp")?.ok_or("the identity token has no exp claim")?;
        if exp + self.skew <= now {
            return Err(format!(
                "the identity token expired {} s ago; ask the CI system for a new one",
                now - exp
            ));
        }
        if let Some(nbf) = number("nbf")? {
            if nbf - self.skew > now {
                return Err(format!(
                    "the identity token is not valid yet (nbf is {} s ahead)",
                    nbf - now
                ));
            }
        }
        if let Some(iat) = number("iat")? {
            if iat - self.skew > now {
                return Err(format!(
                    "the identity token was issued in the future (iat is {} s ahead)",
                    iat - now
                ));
            }
        }
        Ok(exp)
    }

    async fn issue(&self, policy: &TrustPolicyRecord, now: i64) -> Result<Exchanged, Refusal> {
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "token exchange: the database failed");
            Refusal::new(
                "temporarily_unavailable",
                "the gateway's database could not be reached; try again",
            )
        };
        let username = self
            .store
            .ensure_user(&policy.username, UserSource::Internal, None)
            .await
            .map_err(unavailable)?;
        let user = self.store.user(&username).await.map_err(unavailable)?;
        if user.as_ref().is_some_and(|u| u.disabled) {
            return Err(Refusal::new(
                "invalid_grant",
                format!(
                    "user {username} of trust policy {} is disabled",
                    policy.name
                ),
            ));
        }
        let allowed = crate::tokens::rules::parse_allowlist(&policy.allowed_addresses)
            .map_err(|e| Refusal::new("invalid_grant", format!("policy {}: {e}", policy.name)))?;
        let scope: Scope = policy.scope;
        let (record, token) = crate::tokens::issue::issue_exchanged(
            &self.store,
            &self.hasher,
            &username,
            &policy.name,
            now,
            policy.lifetime_seconds,
            scope,
            &allowed,
        )
        .await
        .map_err(unavailable)?;
        Ok(Exchanged {
            token,
            record,
            policy: policy.name.clone(),
            lifetime_seconds: policy.lifetime_seconds,
        })
    }
}

/// The first policy (by name) whose audience and every condition match; otherwise a
/// message naming what did not match in the nearest policy.
fn choose<'a>(
    policies: &'a [TrustPolicyRecord],
    audiences: &[String],
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<&'a TrustPolicyRecord, String> {
    let mut nearest: Option<(usize, String)> = None;
    for policy in policies {
        let mut misses = Vec::new();
        // What the caller's own token says, never what a policy asks: the caller may be
        // anyone with a token of a public CI service.
        if !audiences.contains(&policy.audience) {
            misses.push(format!(
                "aud {audiences:?} is not the audience of a matching policy"
            ));
        }
        for (claim, pattern) in &policy.claims {
            match claims.get(claim) {
                None => misses.push(format!("claim {claim} is missing")),
                Some(value) if !glob_matches(pattern, &claim_text(value)) => misses.push(format!(
                    "claim {claim} is {:?}, which the policy does not accept",
                    claim_text(value)
                )),
                Some(_) => {}
            }
        }
        if misses.is_empty() {
            return Ok(policy);
        }
        if nearest.as_ref().is_none_or(|(n, _)| misses.len() < *n) {
            nearest = Some((misses.len(), misses.join("; ")));
        }
    }
    Err(format!(
        "no trust policy matches the identity token: {}",
        nearest.map(|(_, m)| m).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_values_with_star_and_question_mark_only() {
        assert!(glob_matches("octo-org/*", "octo-org/deploy-app"));
        assert!(glob_matches("refs/heads/main", "refs/heads/main"));
        assert!(!glob_matches("refs/heads/main", "refs/heads/main2"));
        assert!(glob_matches("refs/tags/v?.*", "refs/tags/v1.2.3"));
        assert!(!glob_matches("octo-org/*", "evil-org/octo-org/x"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(
            glob_matches("a*", "a*b"),
            "a literal * in the value is matched by *"
        );
        assert!(pins_owner("octo-org/*") && pins_owner("octo-org/app"));
        assert!(pins_owner("repo:octo-org/app:*"));
        assert!(!pins_owner("octo-org*") && !pins_owner("*/app") && !pins_owner("repo:*"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(check_glob("[ab]").is_err());
        assert!(check_glob("").is_err());
        assert!(check_glob("octo-org/*").is_ok());
    }
}
