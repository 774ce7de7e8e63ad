//! The database: users, tokens and everything the API keeps, in SQLite (embedded
//! default) or PostgreSQL (several replicas), through one sqlx `Any` pool and one set of
//! queries. One file per table group; this one opens the pool and applies migrations.
//!
//! The two dialects differ only in their migrations (`migrations/sqlite`,
//! `migrations/postgres`), which are embedded and applied at start, and in how a change
//! reaches other processes: SQLite triggers append to an `invalidations` table that every
//! process polls; PostgreSQL triggers send NOTIFY on commit (see
//! `tokens::invalidation`). Nothing here is called on the request path except the
//! token lookup of a cache miss.
//!
//! May import: `core` and `config`; the token check, the API and the CLI read it.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

mod audit;
mod channels;
mod freshness;
mod groups;
mod invalidations;
mod inventory;
mod notifications;
mod scim;
mod service_accounts;
mod sessions;
mod settings;
mod signing_keys;
mod smtp_servers;
mod sso;
mod tokens;
mod trust;
mod unused;
mod usage;
mod users;

use crate::core::error::ApiError;
use crate::core::files;
pub use audit::{AuditEntry, AuditEvent, AuditQuery};
pub use channels::{ChannelRecord, ChannelRetry, NewChannel, CHANNEL_KINDS};
pub use freshness::{
    DueRevalidation, FreshnessSummary, RevalidationResult, UserFreshness, FROM_REVALIDATION,
    FROM_SCIM, FROM_SIGNIN,
};
pub use groups::{group_name_key, GroupChange, GroupMember, GroupWrite, Replaced, ScimGroup};
use http::StatusCode;
pub use invalidations::{Invalidation, INVALIDATION_BATCH};
pub use inventory::{
    BulkRevoked, InventoryItem, InventoryQuery, SortKey, StateFilter, TokenState, COUNT_CAP,
    OWNER_SOURCES,
};
pub use notifications::{
    DueToken, NotificationRecord, NotifySettings, PassRecord, Reminder, KIND_EXPIRY, KIND_UNUSED,
    NOTIFICATION_STATUSES,
};
pub use scim::{new_scim_id, ScimUser, ScimUserQuery};
pub use service_accounts::{OrphanChange, ServiceAccount, ServiceAccountOwner};
pub use sessions::{NewSession, PendingSso, SessionRecord, SignInMethod};
pub use settings::Settings;
pub use signing_keys::StoredKey;
pub use smtp_servers::{SealedPassword, SmtpServerRecord};
pub use tokens::{AuthRecord, LeakOutcome, NewToken, Rotated, TokenRecord, Usage};
pub use trust::TrustPolicyRecord;
pub use unused::{UnusedToken, UNUSED_WARNING_DAYS};
pub use usage::{AddressSeen, DayCount, TokenRefusal, TokenUsage, UsageBatch};
pub use users::{UserRecord, UserSource};

/// Which SQL database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Store failures that callers act on; everything else is `Database`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user {0:?} already has an active token named {1:?}; pick another name or revoke that token")]
    NameTaken(String, String),
    #[error("user {0:?} has {1} active tokens, the most an administrator allows (max_tokens_per_user); delete one that is no longer used first")]
    TooManyTokens(String, i64),
    #[error("no token with id {0:?}")]
    NoSuchToken(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("no SMTP server {0:?}")]
    NoSuchSmtpServer(String),
    #[error("an SMTP server named {0:?} exists already; pick another name")]
    SmtpServerNameTaken(String),
    #[error("SMTP server {0:?} is the one notifications are sent through")]
    SmtpServerInUse(String),
    #[error("no trust policy {0:?}")]
    NoSuchTrustPolicy(String),
    #[error("a trust policy named {0:?} exists already; pick another name")]
    TrustPolicyNameTaken(String),
    #[error("no service account {0:?}")]
    NoSuchServiceAccount(String),
    #[error("{0:?} cannot be a service account: {1}")]
    NotServiceAccount(String, &'static str),
    #[error("{0:?} cannot own a service account: {1}")]
    NotOwner(String, &'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "self service",
        include_str!("../../migrations/sqlite/0002_self_service.sql"),
    ),
    (
        3,
        "notifications",
        include_str!("../../migrations/sqlite/0003_notifications.sql"),
    ),
    (
        4,
        "signing keys",
        include_str!("../../migrations/sqlite/0004_signing_keys.sql"),
    ),
    (
        5,
        "token rules",
        include_str!("../../migrations/sqlite/0005_token_rules.sql"),
    ),
    (
        6,
        "scim",
        include_str!("../../migrations/sqlite/0006_scim.sql"),
    ),
    (
        7,
        "user names",
        include_str!("../../migrations/sqlite/0007_user_names.sql"),
    ),
    (
        8,
        "sso identities",
        include_str!("../../migrations/sqlite/0008_sso_identities.sql"),
    ),
    (
        9,
        "session admin check",
        include_str!("../../migrations/sqlite/0009_session_admin_check.sql"),
    ),
    (
        10,
        "trust policies",
        include_str!("../../migrations/sqlite/0010_trust_policies.sql"),
    ),
    (
        11,
        "sso freshness",
        include_str!("../../migrations/sqlite/0011_sso_freshness.sql"),
    ),
    (
        12,
        "reminders and channels",
        include_str!("../../migrations/sqlite/0012_reminders_channels.sql"),
    ),
    (
        13,
        "token usage",
        include_str!("../../migrations/sqlite/0013_token_usage.sql"),
    ),
    (
        14,
        "service accounts",
        include_str!("../../migrations/sqlite/0014_service_accounts.sql"),
    ),
    (
        15,
        "token inventory",
        include_str!("../../migrations/sqlite/0015_inventory.sql"),
    ),
    (
        16,
        "channel addresses",
        include_str!("../../migrations/sqlite/0016_channel_addresses.sql"),
    ),
    (
        17,
        "channel sends",
        include_str!("../../migrations/sqlite/0017_channel_sends.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "self service",
        include_str!("../../migrations/postgres/0002_self_service.sql"),
    ),
    (
        3,
        "notifications",
        include_str!("../../migrations/postgres/0003_notifications.sql"),
    ),
    (
        4,
        "signing keys",
        include_str!("../../migrations/postgres/0004_signing_keys.sql"),
    ),
    (
        5,
        "token rules",
        include_str!("../../migrations/postgres/0005_token_rules.sql"),
    ),
    (
        6,
        "scim",
        include_str!("../../migrations/postgres/0006_scim.sql"),
    ),
    (
        7,
        "user names",
        include_str!("../../migrations/postgres/0007_user_names.sql"),
    ),
    (
        8,
        "sso identities",
        include_str!("../../migrations/postgres/0008_sso_identities.sql"),
    ),
    (
        9,
        "session admin check",
        include_str!("../../migrations/postgres/0009_session_admin_check.sql"),
    ),
    (
        10,
        "trust policies",
        include_str!("../../migrations/postgres/0010_trust_policies.sql"),
    ),
    (
        11,
        "sso freshness",
        include_str!("../../migrations/postgres/0011_sso_freshness.sql"),
    ),
    (
        12,
        "reminders and channels",
        include_str!("../../migrations/postgres/0012_reminders_channels.sql"),
    ),
    (
        13,
        "token usage",
        include_str!("../../migrations/postgres/0013_token_usage.sql"),
    ),
    (
        14,
        "service accounts",
        include_str!("../../migrations/postgres/0014_service_accounts.sql"),
    ),
    (
        15,
        "token inventory",
        include_str!("../../migrations/postgres/0015_inventory.sql"),
    ),
    (
        16,
        "channel addresses",
        include_str!("../../migrations/postgres/0016_channel_addresses.sql"),
    ),
    (
        17,
        "channel sends",
        include_str!("../../migrations/postgres/0017_channel_sends.sql"),
    ),
];

impl Store {
    /// Connects, creating a SQLite file (and its directory) if missing, and applies
    /// the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Self::open(url, max_connections, true).await
    }

    /// Opens a database that must exist already: a SQLite file is not created (the
    /// command line uses this, so that it never acts on a new, empty database).
    pub async fn connect_existing(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Self::open(url, max_connections, false).await
    }

    async fn open(url: &str, max_connections: u32, create: bool) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let connect_url = match backend {
            Backend::Sqlite => sqlite_url(url, create)?,
            Backend::Postgres => {
                reach_postgres(url).await?;
                url.to_string()
            }
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // Lookups are single index seeks and the OS caches the file: a
                    // small page cache per connection keeps memory flat.
                    conn.execute("PRAGMA cache_size = -512").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&connect_url).await?;
        if backend == Backend::Sqlite {
            // WAL lets the gateway read while the CLI writes; it persists in the file.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let store = Store {
            pool,
            backend,
            url: url.to_string(),
        };
        store.migrate().await?;
        store.fill_name_keys().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL this store was opened with (for the PostgreSQL listener).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn migrator(&self) -> Migrator {
        let set = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations: Vec<Migration> = set
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Ready means reachable with every embedded migration applied.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let latest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        if applied.unwrap_or(0) < latest {
            return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                "schema version {} is older than {latest}",
                applied.unwrap_or(0)
            ))));
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns `sqlite://path` into a URL that creates the file, and creates its directory.
/// One direct connection before the pool is built: the pool's retries would hide why
/// PostgreSQL cannot be reached behind "pool timed out".
async fn reach_postgres(url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let target = postgres_target(url);
    let attempt = tokio::time::timeout(Duration::from_secs(5), sqlx::AnyConnection::connect(url));
    let why = match attempt.await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(sqlx::Error::Io(e))) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => format!("connection refused at {target}"),
            _ => format!("cannot reach {target}: {e}"),
        },
        Ok(Err(e)) => format!("{target}: {e}"),
        Err(_) => format!("{target} did not answer within 5 s"),
    };
    Err(StoreError::Database(sqlx::Error::Configuration(
        format!("PostgreSQL: {why}").into(),
    )))
}

/// `host:port` of a PostgreSQL URL, for messages (never the user or password).
fn postgres_target(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = if host.is_empty() { "localhost" } else { host };
    let has_port = match host.rsplit_once(':') {
        Some((h, _)) => !(h.ends_with(':') || host.starts_with('[') && host.ends_with(']')),
        None => false,
    };
    if has_port {
        host.to_string()
    } else {
        format!("{host}:5432")
    }
}

fn sqlite_url(url: &str, create: bool) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Database(sqlx::Error::Configuration(
            "database.url: give SQLite a file path (sqlite://data/patgate.db); an in-memory database would lose every token".into(),
        )));
    }
    if !create && !Path::new(path).exists() {
        return Err(StoreError::Database(sqlx::Error::Configuration(
            format!("no database file at {path}").into(),
        )));
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| create && !d.as_os_str().is_empty())
    {
        files::create_private_dir(dir).map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("database.url: creating directory {}: {e}", dir.display()).into(),
            ))
        })?;
    }
    // Private from the start: SQLite gives its -wal and -shm files the database's mode.
    if create {
        files::create_private_file(Path::new(path)).map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("database.url: creating {path}: {e}").into(),
            ))
        })?;
    }
    if let Some(mode) = files::loose_mode(Path::new(path)) {
        tracing::warn!(
            path,
            mode = format!("{mode:o}"),
            "the database file can be read by other users of this machine (it holds token hashes and sealed secrets); make it private: chmod 600 {path} {path}-wal {path}-shm"
        );
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push(if create { "mode=rwc" } else { "mode=rw" });
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}

/// A store error as the API answers it: conflicts and missing rows by name, anything
/// else as the database being unavailable (logged, never shown).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NameTaken(_, name) => ApiError::new(
                StatusCode::CONFLICT,
                "name_taken",
                format!("you already have a token named {name:?}; pick another name"),
            ),
            StoreError::TooManyTokens(user, max) => ApiError::new(
                StatusCode::CONFLICT,
                "token_limit_reached",
                format!(
                    "{user:?} has {max} active tokens, the most an administrator allows per \
                     user; delete one that is no longer used, or rotate one instead of \
                     making another"
                ),
            ),
            StoreError::NoSuchToken(_) => ApiError::not_found("no such token"),
            StoreError::NoSuchUser(user) => ApiError::not_found(format!("no user {user:?}")),
            StoreError::NoSuchSmtpServer(id) => {
                ApiError::not_found(format!("no SMTP server {id:?}"))
            }
            StoreError::SmtpServerNameTaken(name) => ApiError::new(
                StatusCode::CONFLICT,
                "name_taken",
                format!("an SMTP server named {name:?} exists already; pick another name"),
            ),
            StoreError::NoSuchTrustPolicy(name) => {
                ApiError::not_found(format!("no trust policy {name:?}"))
            }
            StoreError::TrustPolicyNameTaken(name) => ApiError::new(
                StatusCode::CONFLICT,
                "name_taken",
                format!("a trust policy named {name:?} exists already; pick another name"),
            ),
            StoreError::NoSuchServiceAccount(name) => {
                ApiError::not_found(format!("no service account {name:?}"))
            }
            e @ StoreError::NotServiceAccount(..) => {
                ApiError::new(StatusCode::CONFLICT, "not_service_account", e.to_string())
            }
            e @ StoreError::NotOwner(..) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_service_account",
                e.to_string(),
            ),
            StoreError::SmtpServerInUse(id) => ApiError::new(
                StatusCode::CONFLICT,
                "smtp_server_in_use",
                format!(
                    "SMTP server {id:?} is the one expiry notifications are sent through; \
                     choose another in the settings (notifications.smtp_server_id) or disable notifications first"
                ),
            ),
            other => {
                tracing::warn!(error = %other, "database error in the API");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the token database could not be reached; try again",
                )
            }
        }
    }
}
