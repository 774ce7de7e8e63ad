//! Every check `serve` makes of its configuration before it opens a socket, in one
//! place, so that `check-config` passes exactly what `serve` accepts: key lengths and
//! files, TLS files, the upstream's TLS settings, the identity settings. With
//! `--connect`, `check-config` also reaches the database and Deploy.
//!
//! Nothing here creates a file: a key file that does not exist yet is reported as
//! one that `serve` will create.

use std::time::Duration;

use crate::config::{Config, ConfigError, IdentityMode, JwtAlgorithm};
use crate::edge::{server, upstream};
use crate::identity::{jwt, UpstreamIdentity};
use crate::tokens::keys;

/// Checks what `serve` would refuse; returns notes for the operator (files that will be
/// created, and the like).
pub fn check(config: &Config) -> Result<Vec<String>, ConfigError> {
    let mut notes = Vec::new();
    let problem = |e: anyhow::Error| ConfigError::new(format!("{e:#}"));
    if keys::existing_token_key(&config.secrets)
        .map_err(problem)?
        .is_none()
    {
        notes.push(format!(
            "secrets.token_key_file {} does not exist yet; serve creates it",
            config.secrets.token_key_file.display()
        ));
    }
    keys::previous_token_keys(&config.secrets).map_err(problem)?;
    if let Some(files) = &config.tls {
        server::tls_acceptor(files).map_err(problem)?;
    }
    upstream::Pool::new(&config.upstream, None).map_err(problem)?;
    if let Some(sso) = &config.sso {
        crate::signin::http_client::HttpClient::new(sso.ca_file.as_deref(), Duration::from_secs(1))
            .map_err(|e| ConfigError::new(format!("sso.ca_file: {e:#}")))?;
    }
    let identity = &config.upstream.identity;
    if identity.mode == IdentityMode::Jwt {
        if identity.jwt.algorithm != JwtAlgorithm::Hs256
            && !jwt::check_key_file(&identity.jwt).map_err(problem)?
        {
            notes.push(format!(
                "upstream.identity.jwt.key_file {} does not exist; serve generates a signing key unless the database holds one",
                identity.jwt.key_file.display()
            ));
        }
    } else {
        UpstreamIdentity::new(identity, None).map_err(|e| {
            ConfigError::new(format!(
                "upstream.identity: {e}; the service account's username and password must be printable ASCII"
            ))
        })?;
    }
    Ok(notes)
}

/// `check-config --connect`: reaches the database, never creating it.
pub async fn reach_database(config: &Config) -> anyhow::Result<String> {
    let database = crate::config::redact_url(&config.database.url);
    if config
        .database
        .sqlite_file()
        .is_some_and(|file| !file.exists())
    {
        return Ok(format!(
            "database {database}: no file yet; serve creates it"
        ));
    }
    let store = crate::store::Store::connect_existing(&config.database.url, 1)
        .await
        .map_err(|e| anyhow::anyhow!("database {database}: {e}"))?;
    store.ready().await?;
    store.close().await;
    Ok(format!("database {database}: reached"))
}

/// The `User-Agent` of the one request that asks whether Deploy answers.
pub const START_CHECK_AGENT: &str = "patgate (start-up check)";

/// `check-config --connect` and the start of `serve`: asks Deploy for its server
/// information; any answer, even 401, shows that Deploy is reachable.
pub async fn reach_deploy(config: &Config) -> anyhow::Result<String> {
    let client = crate::signin::http_client::HttpClient::new(
        config.upstream.ca_file.as_deref(),
        config.upstream.connect_timeout.max(Duration::from_secs(1)) * 2,
    )?;
    let base = config.upstream.address();
    let url = format!("{base}/deployit/server/info");
    // Named, so that whoever reads Deploy's access log sees what asked.
    let request = http::Request::get(url.as_str())
        .header(http::header::USER_AGENT, START_CHECK_AGENT)
        .body(Vec::new())?;
    let answer = client
        .send(request)
        .await
        .map_err(|e| anyhow::anyhow!("Deploy (upstream.url {base}): {e}"))?;
    Ok(format!(
        "Deploy at {base}: answered GET /deployit/server/info with {}",
        answer.status()
    ))
}
