//! The administrators' inventory: every token, of users and service accounts alike,
//! filtered, sorted and paged by the database; and the revocation of a selection, or of
//! every token at once.

use sqlx::any::AnyArguments;
use sqlx::Row;

use super::tokens::{active, expiry, token_record, TOKEN_COLUMNS};
use super::{Backend, Store, StoreError, TokenRecord};
use crate::core::scope::{MadeBy, Scope};
use crate::core::time::now;

const DAY: i64 = 86_400;

pub use crate::core::pattern::inventory::OWNER_SOURCES;

/// A token's state in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// It works.
    Active,
    /// Its expiry has passed.
    Expired,
    /// Revoked, or replaced by rotation and past its grace: it never works again.
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }

    /// The state of `token` at `now`.
    pub fn of(token: &TokenRecord, now: i64) -> TokenState {
        if token.revoked_at.is_some() || token.grace_until.is_some_and(|g| g <= now) {
            TokenState::Revoked
        } else if token.expires_at.is_some_and(|e| e <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

/// What the `state` filter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Active,
    /// Active and expiring within this many days.
    Expiring(i64),
    Expired,
    Revoked,
}

/// The columns the inventory sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Created,
    Expires,
    LastUsed,
    Owner,
    Name,
}

impl SortKey {
    pub const NAMES: [(&'static str, SortKey); 5] = [
        ("created_at", SortKey::Created),
        ("expires_at", SortKey::Expires),
        ("last_used_at", SortKey::LastUsed),
        ("owner", SortKey::Owner),
        ("name", SortKey::Name),
    ];

    /// `ORDER BY` for this key. A token that never expires sorts as the latest expiry,
    /// one never used as the oldest use, on both databases; each order is an index's
    /// (migration 0015).
    fn order_by(self, descending: bool) -> String {
        let dir = if descending { "DESC" } else { "ASC" };
        let column = match self {
            SortKey::Created => "t.created_at".to_string(),
            SortKey::Expires => expiry("t."),
            SortKey::LastUsed => "COALESCE(t.last_used_at, 0)".to_string(),
            SortKey::Owner => "t.username".to_string(),
            SortKey::Name => "t.name".to_string(),
        };
        format!("{column} {dir}, t.id {dir}")
    }
}

/// The inventory's filters, sort and page; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    pub owner: Option<String>,
    /// One of [`OWNER_SOURCES`].
    pub source: Option<String>,
    pub scope: Option<Scope>,
    pub state: Option<StateFilter>,
    /// Active, and expiring within this many days.
    pub expires_within_days: Option<i64>,
    /// Not used for at least this many days (a token never used counts from its creation).
    pub unused_for_days: Option<i64>,
    /// `Some(None)`: tokens made before `made_by` was kept.
    pub made_by: Option<Option<MadeBy>>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: i64,
    pub limit: i64,
}

/// One token of the inventory, with what it says of its owner.
#[derive(Debug, Clone)]
pub struct InventoryItem {
    pub token: TokenRecord,
    /// One of [`OWNER_SOURCES`].
    pub owner_source: String,
    pub state: TokenState,
}

/// What revoking a selection did.
#[derive(Debug, Clone, Default)]
pub struct BulkRevoked {
    pub revoked: Vec<TokenRecord>,
    /// Ids of tokens that were revoked (or replaced and past their grace) already.
    pub already: Vec<String>,
    pub unknown: Vec<String>,
}

/// A query's text and the values of its `$n` placeholders.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Value>,
}

enum Value {
    Int(i64),
    Text(String),
}

impl Sql {
    /// Adds a value and returns its placeholder.
    fn value(&mut self, value: Value) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn arguments(self) -> (String, AnyArguments<'static>) {
        use sqlx::Arguments;
        let mut args = AnyArguments::default();
        for value in self.binds {
            // Adding a plain integer or string to Any's arguments cannot fail.
            let _ = match value {
                Value::Int(n) => args.add(n),
                Value::Text(t) => args.add(t),
            };
        }
        (self.text, args)
    }
}

/// The `WHERE` clause of `q`, with `$1` the current instant.
/// `owner_scan`: the tokens of the source's users are to be read through its users (few
/// of them), rather than by scanning every token in the sort's order.
fn conditions(q: &InventoryQuery, sql: &mut Sql, at: i64, owner_scan: bool) {
    let now = sql.value(Value::Int(at));
    debug_assert_eq!(now, "$1");
    let mut all = vec!["1 = 1".to_string()];
    let active = active("t.", &now);
    let gone = format!(
        "(t.revoked_at IS NOT NULL OR (t.grace_until IS NOT NULL AND t.grace_until <= {now}))"
    );
    if let Some(owner) = &q.owner {
        all.push(format!(
            "t.username = {}",
            sql.value(Value::Text(owner.clone()))
        ));
    }
    match q.source.as_deref() {
        None => {}
        Some("service_account") => {
            all.push("t.username IN (SELECT username FROM service_accounts)".into())
        }
        Some(source) => {
            // `|| ''` keeps a planner from reading a source most users have user by user.
            let owner = if owner_scan {
                "t.username"
            } else {
                "(t.username || '')"
            };
            // Written into the text (one of OWNER_SOURCES, checked by the API), not
            // bound: PostgreSQL's generic plan of a bound value cannot tell a source no
            // user has from one most users have, and would walk every token for none.
            let source = OWNER_SOURCES
                .iter()
                .find(|s| **s == source)
                .copied()
                .unwrap_or("");
            all.push(format!(
                "t.username NOT IN (SELECT username FROM service_accounts) \
                 AND {owner} IN (SELECT username FROM users WHERE source = '{source}')"
            ))
        }
    }
    if let Some(scope) = q.scope {
        // A fixed word, written into the text for the same reason as the source.
        all.push(format!("t.scope = '{}'", scope.as_str()));
    }
    match q.state {
        None => {}
        Some(StateFilter::Active) => all.push(format!("({active})")),
        Some(StateFilter::Expiring(days)) => all.push(format!(
            "({active}) AND {} <= {}",
            expiry("t."),
            sql.value(Value::Int(at + days * DAY))
        )),
        Some(StateFilter::Expired) => all.push(format!("NOT {gone} AND {} <= {now}", expiry("t."))),
        Some(StateFilter::Revoked) => all.push(gone.clone()),
    }
    if let Some(days) = q.expires_within_days {
        all.push(format!(
            "({active}) AND {} <= {}",
            expiry("t."),
            sql.value(Value::Int(at + days * DAY))
        ));
    }
    if let Some(days) = q.unused_for_days {
        let since = sql.value(Value::Int(at - days * DAY));
        // A token is used after it is made: one unused since then was made before, which
        // the index of creation times can say.
        all.push(format!(
            "COALESCE(t.last_used_at, t.created_at) <= {since} AND t.created_at <= {since}"
        ));
    }
    match q.made_by {
        None => {}
        Some(None) => all.push("t.made_by IS NULL".into()),
        Some(Some(made_by)) => all.push(format!("t.made_by = '{}'", made_by.as_str())),
    }
    sql.text.push_str(" WHERE ");
    sql.text.push_str(&all.join(" AND "));
}

/// Counted exactly up to this many; beyond, the total says "at least".
pub const COUNT_CAP: i64 = 10_000;

impl Store {
    /// One page of the inventory under `q`, and how many tokens match: exactly up to
    /// [`COUNT_CAP`], else `COUNT_CAP` and `true` (at least that many). One table is
    /// scanned, by the index its sort or filters name; the owner's source is looked up
    /// for the page's rows only.
    pub async fn token_inventory(
        &self,
        q: &InventoryQuery,
    ) -> Result<(Vec<InventoryItem>, i64, bool), StoreError> {
        let at = now();
        let columns: Vec<String> = TOKEN_COLUMNS
            .split(',')
            .map(|c| format!("t.{}", c.trim()))
            .collect();
        let mut page = Sql {
            text: format!(
                "SELECT {}, (SELECT u.source FROM users u WHERE u.username = t.username) \
                 AS user_source, CASE WHEN EXISTS (SELECT 1 FROM service_accounts sa \
                 WHERE sa.username = t.username) THEN 1 ELSE 0 END AS service FROM tokens t",
                columns.join(", ")
            ),
            ..Sql::default()
        };
        let owner_scan = match q.source.as_deref() {
            Some(source) if source != "service_account" => self.few_users_of(source).await?,
            _ => false,
        };
        conditions(q, &mut page, at, owner_scan);
        page.text.push_str(&format!(
            " ORDER BY {} LIMIT {} OFFSET {}",
            q.sort.order_by(q.descending),
            q.limit.max(0),
            q.offset.max(0)
        ));
        let mut count = Sql {
            text: "SELECT COUNT(*) FROM (SELECT 1 FROM tokens t".into(),
            ..Sql::default()
        };
        conditions(q, &mut count, at, owner_scan);
        count
            .text
            .push_str(&format!(" LIMIT {}) capped", COUNT_CAP + 1));

        let (text, args) = page.arguments();
        let rows = sqlx::query_with(&text, args).fetch_all(&self.pool).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let token = token_record(row)?;
            let service: i64 = row.try_get("service")?;
            let owner_source = if service != 0 {
                "service_account".to_string()
            } else {
                row.try_get::<Option<String>, _>("user_source")?
                    .unwrap_or_else(|| "internal".into())
            };
            items.push(InventoryItem {
                state: TokenState::of(&token, at),
                token,
                owner_source,
            });
        }
        // A short first page is the whole answer.
        let total = if q.offset == 0 && (items.len() as i64) < q.limit {
            items.len() as i64
        } else {
            let (text, args) = count.arguments();
            sqlx::query_scalar_with(&text, args)
                .fetch_one(&self.pool)
                .await?
        };
        Ok((items, total.min(COUNT_CAP), total > COUNT_CAP))
    }

    /// Whether at most a tenth of the users come from `source`.
    async fn few_users_of(&self, source: &str) -> Result<bool, StoreError> {
        let (of_source, all): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN source = $1 THEN 1 ELSE 0 END), 0), COUNT(*) FROM users",
        )
        .bind(source)
        .fetch_one(&self.pool)
        .await?;
        Ok(of_source * 10 <= all)
    }

    /// Revokes the tokens of `ids` that work, in one transaction.
    pub async fn revoke_tokens(&self, ids: &[String]) -> Result<BulkRevoked, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let mut outcome = BulkRevoked::default();
        let mut revoked_ids = Vec::new();
        for id in ids {
            let done = sqlx::query(
                "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                 AND (grace_until IS NULL OR grace_until > $1)",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                revoked_ids.push(id.clone());
                continue;
            }
            let known: Option<String> = sqlx::query_scalar("SELECT id FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match known {
                Some(_) => outcome.already.push(id.clone()),
                None => outcome.unknown.push(id.clone()),
            }
        }
        tx.commit().await?;
        for id in revoked_ids {
            outcome.revoked.push(self.get_token(&id).await?);
        }
        Ok(outcome)
    }

    /// Revokes every token that works, of every user and service account, in one
    /// transaction; returns how many. Every cache is told to forget everything first,
    /// so that the replicas refuse them all at once rather than one by one.
    pub async fn revoke_every_token(&self) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        match self.backend() {
            Backend::Sqlite => {
                sqlx::query(
                    "INSERT INTO invalidations (kind, key, created_at) VALUES ('all', 'revoke-all', $1)",
                )
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            Backend::Postgres => {
                sqlx::query("SELECT pg_notify('patgate_invalidate', 'a:revoke-all')")
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let done = sqlx::query(&format!(
            "UPDATE tokens SET revoked_at = $1 WHERE {}",
            active("", "$1")
        ))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
