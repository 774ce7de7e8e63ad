//! Issuers' signing keys: discovery (`/.well-known/openid-configuration`) and the JWKS
//! it names, fetched over https (plain http only for an issuer on a loopback address),
//! cached, fetched again after `exchange.jwks_refresh` or when a token names a key the
//! cache does not hold, but never more often than `exchange.jwks_min_refresh`. A key set
//! older than `exchange.jwks_max_age` is never used. Fetches for one issuer wait for
//! each other (one fetch at a time per issuer); other issuers are not held up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::jwt::{Jwk, JwkSet, Unverified};
use crate::config::Exchange;
use crate::signin::http_client::HttpClient;

/// Largest discovery or JWKS document read.
const MAX_DOCUMENT: usize = 256 * 1024;

struct Fetched {
    keys: Arc<Vec<Jwk>>,
    at: Instant,
}

#[derive(Default)]
struct Entry {
    fetched: Option<Fetched>,
    last_attempt: Option<Instant>,
}

/// Why no key could be found for a token.
#[derive(Debug)]
pub enum KeyError {
    /// The issuer's keys cannot be had (fetch failed, and no recent enough copy).
    Unavailable(String),
    /// The issuer does not publish the key the token names.
    UnknownKey(String),
}

pub struct IssuerKeys {
    client: HttpClient,
    settings: Exchange,
    /// One entry per issuer, each behind its own lock: a slow issuer holds up only the
    /// exchanges for it.
    entries: std::sync::Mutex<HashMap<String, Arc<Mutex<Entry>>>>,
}

/// Whether `issuer` may be fetched: https, or http on a loopback address.
pub fn fetchable(issuer: &str) -> Result<(), String> {
    let uri: http::Uri = issuer
        .parse()
        .map_err(|_| format!("issuer {issuer:?} is not a URL"))?;
    let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
    if host.is_empty() {
        return Err(format!("issuer {issuer:?} names no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "issuer {issuer:?}: keys are fetched over https only (plain http only on a loopback address)"
                ))
            }
        }
        _ => Err(format!("issuer {issuer:?} must be an https URL")),
    }
}

impl IssuerKeys {
    pub fn new(settings: &Exchange) -> anyhow::Result<IssuerKeys> {
        Ok(IssuerKeys {
            client: HttpClient::new(None, Duration::from_secs(10))?,
            settings: settings.clone(),
            entries: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The keys of `issuer` that can check `token`.
    pub async fn for_token(
        &self,
        issuer: &str,
        token: &Unverified,
    ) -> Result<Arc<Vec<Jwk>>, KeyError> {
        let shared = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(issuer.to_string())
            .or_default()
            .clone();
        let mut entry = shared.lock().await;
        let now = Instant::now();
        let fresh = entry.fetched.as_ref().filter(|f| {
            now.duration_since(f.at) < self.settings.jwks_refresh && token.key_known(&f.keys)
        });
        if let Some(fetched) = fresh {
            return Ok(fetched.keys.clone());
        }
        let may_fetch = entry
            .last_attempt
            .is_none_or(|at| now.duration_since(at) >= self.settings.jwks_min_refresh);
        if may_fetch {
            entry.last_attempt = Some(now);
            match self.fetch(issuer).await {
                Ok(keys) => {
                    entry.fetched = Some(Fetched {
                        keys: Arc::new(keys),
                        at: Instant::now(),
                    });
                }
                Err(e) => {
                    tracing::warn!(issuer, error = %e, "could not fetch an issuer's keys");
                    let usable = entry
                        .fetched
                        .as_ref()
                        .is_some_and(|f| now.duration_since(f.at) < self.settings.jwks_max_age);
                    if !usable {
                        return Err(KeyError::Unavailable(format!(
                            "the keys of issuer {issuer} cannot be fetched; try again later"
                        )));
                    }
                }
            }
        }
        match &entry.fetched {
            Some(f) if now.duration_since(f.at) >= self.settings.jwks_max_age => {
                Err(KeyError::Unavailable(format!(
                    "the keys of issuer {issuer} are older than exchange.jwks_max_age and cannot be fetched again yet"
                )))
            }
            Some(f) if token.key_known(&f.keys) => Ok(f.keys.clone()),
            // The issuer may have published the key since: say when to try again.
            Some(_) if !may_fetch => Err(KeyError::Unavailable(format!(
                "issuer {issuer}'s keys were fetched moments ago without the key this token names; \
                 try again in {} s",
                self.settings.jwks_min_refresh.as_secs().max(1)
            ))),
            Some(_) => Err(KeyError::UnknownKey(format!(
                "issuer {issuer} publishes no {} key {}",
                token.alg,
                token
                    .kid
                    .as_deref()
                    .map(|k| format!("with kid {k:?}"))
                    .unwrap_or_default()
            ))),
            None => Err(KeyError::Unavailable(format!(
                "the keys of issuer {issuer} were not fetched yet; try again in a minute"
            ))),
        }
    }

    async fn fetch(&self, issuer: &str) -> Result<Vec<Jwk>, String> {
        fetchable(issuer)?;
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: serde_json::Value = self.get_json(&discovery_url).await?;
        if discovery["issuer"].as_str() != Some(issuer) {
            return Err(format!(
                "its discovery document names issuer {}",
                discovery["issuer"]
            ));
        }
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or("its discovery document has no jwks_uri")?;
        fetchable(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        // The keys come from the issuer's own host: a discovery document cannot send the
        // gateway elsewhere (another service, this machine).
        let host = |url: &str| {
            url.parse::<http::Uri>()
                .ok()
                .and_then(|u| u.authority().map(|a| a.as_str().to_string()))
        };
        if host(jwks_uri) != host(issuer) {
            return Err(format!(
                "its jwks_uri {jwks_uri} is not on the issuer's host"
            ));
        }
        let set: JwkSet = serde_json::from_value(self.get_json(jwks_uri).await?)
            .map_err(|e| format!("its JWKS is not a key set: {e}"))?;
        Ok(set.keys)
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let answer = self
            .client
            .send(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!("{url} answered {}", answer.status()));
        }
        if answer.body().len() > MAX_DOCUMENT {
            return Err(format!(
                "{url} answered more than {} KiB",
                MAX_DOCUMENT / 1024
            ));
        }
        serde_json::from_slice(answer.body()).map_err(|e| format!("{url}: not JSON: {e}"))
    }
}
