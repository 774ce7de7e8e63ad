//! Opening the database with the token key: created on the gateway's first start,
//! required to exist for the command line.

use crate::config::{Config, ConfigError};
use crate::core::token::TokenHasher;
use crate::store::Store;
use crate::tokens::keys;

/// Opens the store with the configured token key for the server: a missing key file
/// and SQLite database are created.
pub async fn open_store(config: &Config) -> anyhow::Result<(Store, TokenHasher)> {
    let key = keys::token_key(&config.secrets).map_err(as_config_error)?;
    open_with(config, key, true).await
}

/// Opens the store for the command line: the database and key must exist already, so
/// that a command run with the wrong configuration (or from another folder) stops
/// instead of acting on a new, empty database no gateway reads.
pub async fn open_existing_store(config: &Config) -> anyhow::Result<(Store, TokenHasher)> {
    let source = config.source_text();
    let Some(key) = keys::existing_token_key(&config.secrets).map_err(as_config_error)? else {
        return Err(ConfigError::new(format!(
            "no token key at {} (secrets.token_key_file of {source}); the gateway creates it at its first start: start it once with this configuration, or pass the configuration it runs with (--config)",
            config.secrets.token_key_file.display()
        ))
        .into());
    };
    if let Some(file) = config.database.sqlite_file().filter(|f| !f.exists()) {
        return Err(ConfigError::new(format!(
            "no database at {} (database.url of {source}); the gateway creates it at its first start: start it once with this configuration, or pass the configuration it runs with (--config)",
            file.display()
        ))
        .into());
    }
    open_with(config, key, false).await
}

fn as_config_error(e: anyhow::Error) -> anyhow::Error {
    ConfigError::new(format!("{e:#}")).into()
}

async fn open_with(
    config: &Config,
    key: Vec<u8>,
    create: bool,
) -> anyhow::Result<(Store, TokenHasher)> {
    let previous = keys::previous_token_keys(&config.secrets).map_err(as_config_error)?;
    let url = &config.database.url;
    let store = if create {
        Store::connect(url, config.database.max_connections).await
    } else {
        Store::connect_existing(url, config.database.max_connections).await
    }
    .map_err(|e| anyhow::anyhow!("database.url {}: {e}", crate::config::redact_url(url)))?;
    let hasher = TokenHasher::with_previous(&key, &previous);
    // Hashes from before key ids were recorded were made with the only key there was.
    if !hasher.rotating() {
        store.stamp_key_id(hasher.key_id()).await?;
    }
    Ok((store, hasher))
}
