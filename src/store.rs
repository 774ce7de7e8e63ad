//! The token store: users and tokens in SQLite (embedded default) or PostgreSQL
//! (several replicas), through one sqlx `Any` pool and one set of queries.
//!
//! The two dialects differ only in their migrations (`migrations/sqlite`,
//! `migrations/postgres`), which are embedded and applied at start, and in how a change
//! reaches other processes: SQLite triggers append to an `invalidations` table that every
//! process polls; PostgreSQL triggers send NOTIFY on commit (see `invalidation`).
//!
//! Token rows carry no plaintext: only the keyed hash, and [`TokenRecord`] has no field
//! for even that, so no listing can leak it.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

use crate::token::{hex, TokenHash};

/// Most invalidation rows read per poll (the SQL says the same number).
pub const INVALIDATION_BATCH: usize = 1000;

/// Which SQL database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a user's identity comes from; decides which policies apply (SSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    Internal,
    Ldap,
    Sso,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSource::Internal => "internal",
            UserSource::Ldap => "ldap",
            UserSource::Sso => "sso",
        }
    }
}

impl std::str::FromStr for UserSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "internal" => Ok(UserSource::Internal),
            "ldap" => Ok(UserSource::Ldap),
            "sso" => Ok(UserSource::Sso),
            other => Err(format!(
                "unknown user source {other:?}; use internal, ldap or sso"
            )),
        }
    }
}

/// Store failures that callers act on; everything else is `Database`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user {0:?} already has an active token named {1:?}; pick another name or revoke that token")]
    NameTaken(String, String),
    #[error("no token with id {0:?}")]
    NoSuchToken(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A token as listed to its owner or an administrator. No secret, no hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub username: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
}

/// What authentication needs to know about a presented token's hash.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub token_id: String,
    pub username: String,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub user_disabled: bool,
    pub last_used_at: Option<i64>,
}

/// A change that must evict cached entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One token, by its hex hash.
    Token(String),
    /// Every token of a user.
    User(String),
}

impl Invalidation {
    /// Parses the NOTIFY payload / table row form: `t:<hash>` or `u:<username>`.
    pub fn parse(kind: &str, key: &str) -> Option<Invalidation> {
        match kind {
            "t" | "token" => Some(Invalidation::Token(key.to_string())),
            "u" | "user" => Some(Invalidation::User(key.to_string())),
            _ => None,
        }
    }
}

/// One last-use observation, written in batches.
#[derive(Debug, Clone)]
pub struct Usage {
    pub token_id: String,
    pub at: i64,
    pub ip: std::net::IpAddr,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/sqlite/0001_init.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/postgres/0001_init.sql"),
)];

/// Seconds since the Unix epoch, UTC.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn new_token_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

fn token_record(row: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
        last_used_ip: row.try_get("last_used_ip")?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, username, name, created_at, expires_at, revoked_at, last_used_at, last_used_ip";

impl Store {
    /// Connects, creating a SQLite file (and its directory) if missing, and applies
    /// the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let connect_url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
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

    /// Creates the user if unknown; an existing user keeps its source and e-mail.
    pub async fn ensure_user(
        &self,
        username: &str,
        source: UserSource,
        email: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (username, source, email, disabled, created_at) \
             VALUES ($1, $2, $3, FALSE, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(username)
        .bind(source.as_str())
        .bind(email)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Disables or re-enables a user; their tokens stop or resume working at once.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
            .bind(disabled)
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser(username.to_string()));
        }
        Ok(())
    }

    /// Stores a new token under its hash.
    pub async fn create_token(
        &self,
        username: &str,
        name: &str,
        hash: &TokenHash,
        expires_at: Option<i64>,
    ) -> Result<TokenRecord, StoreError> {
        let record = TokenRecord {
            id: new_token_id(),
            username: username.to_string(),
            name: name.to_string(),
            created_at: now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
            last_used_ip: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, username, name, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.id)
        .bind(username)
        .bind(name)
        .bind(hex(hash))
        .bind(record.created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(record),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::NameTaken(
                username.to_string(),
                name.to_string(),
            )),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::NoSuchUser(username.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A user's tokens, newest first, revoked ones included.
    pub async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE username = $1 ORDER BY created_at DESC, id"
        ))
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(token_record).collect::<Result<_, _>>()?)
    }

    /// One token by id.
    pub async fn get_token(&self, id: &str) -> Result<TokenRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(token_record(&row)?),
            None => Err(StoreError::NoSuchToken(id.to_string())),
        }
    }

    /// Marks a token revoked (kept for audit). Revoking twice is not an error.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, StoreError> {
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_token(id).await
    }

    /// What authentication needs for one hash, in one indexed query.
    pub async fn lookup(&self, hash: &TokenHash) -> Result<Option<AuthRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.username, t.expires_at, t.revoked_at, t.last_used_at, \
             CASE WHEN u.disabled THEN 1 ELSE 0 END AS disabled \
             FROM tokens t JOIN users u ON u.username = t.username WHERE t.token_hash = $1",
        )
        .bind(hex(hash))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuthRecord {
            token_id: row.try_get("id")?,
            username: row.try_get("username")?,
            expires_at: row.try_get("expires_at")?,
            revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            last_used_at: row.try_get("last_used_at")?,
            user_disabled: row.try_get::<i64, _>("disabled")? != 0,
        }))
    }

    /// Writes a batch of last-use observations in one transaction.
    pub async fn record_usage(&self, batch: &[Usage]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for usage in batch {
            sqlx::query(
                "UPDATE tokens SET last_used_at = $1, last_used_ip = $2 \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(usage.at)
            .bind(usage.ip.to_string())
            .bind(&usage.token_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// SQLite only: the newest invalidation id, where a new process starts polling.
    pub async fn latest_invalidation(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM invalidations")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// SQLite only: invalidations after `after`, oldest first, at most
    /// [`INVALIDATION_BATCH`] of them.
    pub async fn invalidations_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, Invalidation)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, key FROM invalidations WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let key: String = row.try_get("key")?;
            if let Some(inv) = Invalidation::parse(&kind, &key) {
                out.push((id, inv));
            }
        }
        Ok(out)
    }

    /// SQLite only: forgets invalidations older than `age_secs` (every poller has seen them).
    pub async fn prune_invalidations(&self, age_secs: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM invalidations WHERE created_at < $1")
            .bind(now() - age_secs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns `sqlite://path` into a URL that creates the file, and creates its directory.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
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
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("database.url: creating directory {}: {e}", dir.display()).into(),
            ))
        })?;
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}
