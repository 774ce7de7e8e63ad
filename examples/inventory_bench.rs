//! Times the administrators' inventory on many tokens, for the benchmarks: fills the
//! configured database with `--count` tokens of varied owners, sources, scopes, states,
//! expiries, uses and makers, then runs each filter of the inventory `--rounds` times
//! through the store's own query (the page and its total, as the API asks them).
//!
//! ```text
//! inventory_bench --config gateway.yaml [--count 1000000] [--rounds 50] [--fill false]
//! ```
//! With `--fill false`, the tokens a previous run wrote are queried again.
//! Prints one JSON object per line: a query, its matches, and its times in milliseconds.

use std::time::Instant;

use patgate::config::Config;
use patgate::core::scope::{MadeBy, Scope};
use patgate::store::{InventoryQuery, SortKey, StateFilter};
use sqlx::any::AnyPoolOptions;

const BATCH: usize = 1000;
const USERS: usize = 1000;
const ACCOUNTS: usize = 10;
const DAY: i64 = 86_400;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut config_path, mut count, mut rounds, mut fill_first) =
        ("gateway.yaml".to_string(), 1_000_000usize, 50usize, true);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--config" => config_path = value,
            "--count" => count = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            "--fill" => fill_first = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let config = Config::load(config_path.as_ref())?;
    let (store, _) = patgate::app::open_store(&config).await?;
    let now = patgate::core::time::now();
    if fill_first {
        fill(&config.database.url, count, now).await?;
    }
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&config.database.url)
        .await?;
    // Vacuumed and analysed, as a database that has lived with its tokens is.
    sqlx::query("VACUUM").execute(&pool).await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;

    for (name, q) in queries() {
        let mut ms = Vec::with_capacity(rounds);
        let mut matched = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let (_, total, _) = store.token_inventory(&q).await?;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            matched = total;
        }
        ms.sort_by(f64::total_cmp);
        let p = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "{}",
            serde_json::json!({
                "query": name, "tokens": count, "matched": matched, "rounds": rounds,
                "p50_ms": p(0.5), "p99_ms": p(0.99), "max_ms": ms[ms.len() - 1],
            })
        );
    }
    store.close().await;
    Ok(())
}

/// The inventory's filters as the page and the API ask them: 50 a page.
fn queries() -> Vec<(&'static str, InventoryQuery)> {
    let page = InventoryQuery {
        limit: 50,
        descending: true,
        ..InventoryQuery::default()
    };
    let with = |f: &dyn Fn(&mut InventoryQuery)| {
        let mut q = page.clone();
        f(&mut q);
        q
    };
    vec![
        ("everything, newest first", page.clone()),
        ("owner", with(&|q| q.owner = Some("bench42".into()))),
        (
            "source=service_account",
            with(&|q| q.source = Some("service_account".into())),
        ),
        (
            "source=internal",
            with(&|q| q.source = Some("internal".into())),
        ),
        ("source=sso", with(&|q| q.source = Some("sso".into()))),
        (
            "source=ldap (no such users)",
            with(&|q| q.source = Some("ldap".into())),
        ),
        ("made_by=unknown (none)", with(&|q| q.made_by = Some(None))),
        ("scope=webhook", with(&|q| q.scope = Some(Scope::Webhook))),
        (
            "state=active",
            with(&|q| q.state = Some(StateFilter::Active)),
        ),
        (
            "state=expiring (7 days)",
            with(&|q| q.state = Some(StateFilter::Expiring(7))),
        ),
        (
            "state=expired",
            with(&|q| q.state = Some(StateFilter::Expired)),
        ),
        (
            "state=revoked",
            with(&|q| q.state = Some(StateFilter::Revoked)),
        ),
        (
            "unused_for_days=90",
            with(&|q| q.unused_for_days = Some(90)),
        ),
        (
            "made_by=cli",
            with(&|q| q.made_by = Some(Some(MadeBy::Cli))),
        ),
        (
            "state=active, sort=expires_at",
            with(&|q| {
                q.state = Some(StateFilter::Active);
                q.sort = SortKey::Expires;
                q.descending = false;
            }),
        ),
        (
            "sort=last_used_at (longest unused)",
            with(&|q| {
                q.sort = SortKey::LastUsed;
                q.descending = false;
            }),
        ),
        (
            "page 200 (the deepest the page offers)",
            with(&|q| q.offset = 199 * 50),
        ),
        ("page 1000 (the API only)", with(&|q| q.offset = 999 * 50)),
        (
            "owner, state=active, made_by=page",
            with(&|q| {
                q.owner = Some("bench42".into());
                q.state = Some(StateFilter::Active);
                q.made_by = Some(Some(MadeBy::Page));
            }),
        ),
    ]
}

/// Writes `count` tokens, their users and service accounts, spread without a pattern a
/// planner could exploit: a tenth revoked, a fifth never expiring, half never used.
async fn fill(url: &str, count: usize, now: i64) -> anyhow::Result<()> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let mut tx = pool.begin().await?;
    for u in 0..USERS + ACCOUNTS {
        sqlx::query(
            "INSERT INTO users (username, source, disabled, created_at) VALUES ($1, $2, FALSE, $3) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(owner(u))
        .bind(if u % 7 == 0 { "sso" } else { "internal" })
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for a in USERS..USERS + ACCOUNTS {
        sqlx::query(
            "INSERT INTO service_accounts (username, created_at, updated_at) VALUES ($1, $2, $2) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(owner(a))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let made_by = ["page", "page", "api", "cli", "exchange"];
    let scopes = ["full", "full", "full", "read", "webhook"];
    let mut done = 0;
    let started = Instant::now();
    while done < count {
        let n = BATCH.min(count - done);
        let mut sql = String::from(
            "INSERT INTO tokens (id, username, name, token_hash, created_at, expires_at, \
             revoked_at, last_used_at, scope, made_by) VALUES ",
        );
        for i in 0..n {
            let k = done + i;
            // A multiplicative hash: neighbours differ in every attribute.
            let h = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            let created = now - (h % (730 * DAY as u64)) as i64;
            let expires = match h % 5 {
                0 => "NULL".to_string(),
                1 => (created + 30 * DAY).to_string(),
                2 => (created + 60 * DAY).to_string(),
                _ => (created + 365 * DAY).to_string(),
            };
            let revoked = if h % 10 == 3 {
                (created + DAY).to_string()
            } else {
                "NULL".into()
            };
            let used = if (h >> 8) % 2 == 0 {
                "NULL".to_string()
            } else {
                (created + ((h >> 9) % ((now - created).max(1) as u64)) as i64).to_string()
            };
            let user = if k % 100 == 0 {
                owner(USERS + (h as usize) % ACCOUNTS)
            } else {
                owner((h as usize) % USERS)
            };
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('inv{k}', '{user}', 'token {k}', '{:064x}', {created}, {expires}, {revoked}, \
                 {used}, '{}', '{}')",
                k as u128 * 0x1_0000_0001,
                scopes[((h >> 3) % 5) as usize],
                made_by[((h >> 5) % 5) as usize],
            ));
        }
        sqlx::query(&sql).execute(&pool).await?;
        done += n;
        if done % 200_000 == 0 {
            eprintln!("wrote {done} tokens");
        }
    }
    eprintln!(
        "wrote {count} tokens in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

fn owner(u: usize) -> String {
    if u >= USERS {
        format!("robot{}", u - USERS)
    } else {
        format!("bench{u}")
    }
}
