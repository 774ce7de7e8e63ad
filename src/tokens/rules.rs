//! Per-token rules beyond validity: a scope (what a token may ask of Deploy) and an
//! address allowlist (where from). [`AccessRules::permits`] is the one decision every path
//! that accepts a token asks, after the token itself was found valid.
//!
//! Runs for every token request: a `full` token without an allowlist costs two
//! comparisons, and nothing here allocates.

use std::net::IpAddr;

use crate::core::cidr::IpNet;
use crate::core::scope::Scope;

/// The request a token is presented with, as far as the rules look at it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub method: &'a [u8],
    /// The path without its query.
    pub path: &'a [u8],
}

/// Why the rules refused an otherwise valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Scope(Scope),
    Address,
}

/// The process-wide part of the rules: which paths a `webhook` token may reach.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    webhook_paths: Box<[Box<str>]>,
}

impl AccessRules {
    pub fn new(webhook_paths: &[String]) -> AccessRules {
        AccessRules {
            webhook_paths: webhook_paths.iter().map(|p| p.as_str().into()).collect(),
        }
    }

    /// Whether a token of `scope`, limited to `allowed` addresses (`None`: anywhere),
    /// may make `attempt` from `client`.
    #[inline]
    pub fn permits(
        &self,
        scope: Scope,
        allowed: Option<&[IpNet]>,
        attempt: Attempt<'_>,
        client: IpAddr,
    ) -> Result<(), Denied> {
        if let Some(allowed) = allowed {
            if !allowed.iter().any(|net| net.contains(client)) {
                return Err(Denied::Address);
            }
        }
        let permitted = match scope {
            Scope::Full => true,
            Scope::Read => matches!(attempt.method, b"GET" | b"HEAD" | b"OPTIONS"),
            Scope::Webhook => self.is_webhook(attempt.path),
        };
        if permitted {
            Ok(())
        } else {
            Err(Denied::Scope(scope))
        }
    }

    /// Whether `path` is under a configured webhook prefix, and plainly so: a path
    /// that a server could resolve elsewhere (`..`, an encoded dot or slash, `;`
    /// parameters, a backslash, an empty segment) is never a webhook path.
    fn is_webhook(&self, path: &[u8]) -> bool {
        if !self
            .webhook_paths
            .iter()
            .any(|prefix| path.starts_with(prefix.as_bytes()))
        {
            return false;
        }
        let ambiguous = path.windows(2).any(|w| w == b".." || w == b"//")
            || path.iter().any(|&b| matches!(b, b';' | b'\\' | b'%'));
        !ambiguous
    }
}

/// Parses an allowlist as given by a user: each entry an address or a network in CIDR
/// notation. The error names the entry.
pub fn parse_allowlist(entries: &[String]) -> Result<Vec<IpNet>, String> {
    if entries.len() > MAX_ALLOWED_ADDRESSES {
        return Err(format!(
            "at most {MAX_ALLOWED_ADDRESSES} entries in allowed_addresses"
        ));
    }
    entries
        .iter()
        .map(|e| {
            if e.trim() != e {
                return Err(format!(
                    "allowed_addresses entry {e:?}: remove the spaces around it"
                ));
            }
            e.parse::<IpNet>()
                .map_err(|problem| format!("allowed_addresses entry {e:?}: {problem}"))
        })
        .collect()
}

/// Most entries in one token's allowlist.
pub const MAX_ALLOWED_ADDRESSES: usize = crate::core::pattern::MAX_ALLOWED_ADDRESSES;

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt<'a>(method: &'a str, path: &'a str) -> Attempt<'a> {
        Attempt {
            method: method.as_bytes(),
            path: path.as_bytes(),
        }
    }

    #[test]
    fn scopes_limit_methods_and_paths() {
        let rules = AccessRules::new(&["/webhooks/".into(), "/api/v1/hooks/".into()]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let permits = |scope, a| rules.permits(scope, None, a, ip);
        assert!(permits(Scope::Full, attempt("DELETE", "/x")).is_ok());
        assert!(permits(Scope::Read, attempt("GET", "/x")).is_ok());
        assert!(permits(Scope::Read, attempt("OPTIONS", "/x")).is_ok());
        assert_eq!(
            permits(Scope::Read, attempt("POST", "/x")),
            Err(Denied::Scope(Scope::Read))
        );
        assert!(permits(Scope::Webhook, attempt("POST", "/webhooks/git")).is_ok());
        assert!(permits(Scope::Webhook, attempt("POST", "/api/v1/hooks/a")).is_ok());
        for path in [
            "/api/v1/deployit",
            "/webhooks/../api/v1/deployit",
            "/webhooks/%2e%2e/api",
            "/webhooks/x;jsessionid=1",
            "/webhooks//x",
        ] {
            assert_eq!(
                permits(Scope::Webhook, attempt("POST", path)),
                Err(Denied::Scope(Scope::Webhook)),
                "{path}"
            );
        }
    }

    #[test]
    fn allowlists_match_networks_and_single_addresses() {
        let rules = AccessRules::default();
        let allowed = parse_allowlist(&[
            "10.1.0.0/16".into(),
            "2001:db8::/32".into(),
            "192.0.2.7".into(),
        ])
        .unwrap();
        let from = |ip: &str| {
            rules.permits(
                Scope::Full,
                Some(&allowed),
                attempt("GET", "/"),
                ip.parse().unwrap(),
            )
        };
        assert!(from("10.1.200.3").is_ok());
        assert!(from("2001:db8::5").is_ok());
        assert!(from("192.0.2.7").is_ok());
        assert!(from("::ffff:10.1.0.9").is_ok());
        assert_eq!(from("192.0.2.8"), Err(Denied::Address));
        assert_eq!(from("10.2.0.1"), Err(Denied::Address));
        let err = parse_allowlist(&["10.1.0.0/33".into()]).unwrap_err();
        assert!(err.contains("10.1.0.0/33"), "{err}");
    }
}
