//! Fills a patgate database with many tokens for the benchmarks, and writes their
//! plaintexts (one per line) for the load generator.
//!
//! ```text
//! fill_tokens --config gateway.yaml --count 1000000 --out tokens.txt [--users 1000] [--expiring]
//! ```
//! Uses the configured database and token key, so the gateway accepts the tokens.
//! With `--expiring`, tokens expire spread evenly over the coming year (instead of
//! never) and users have e-mail addresses, for the notifier's benchmark.

use std::io::Write;

use patgate::config::Config;
use patgate::core::token::{hex, PlainToken};
use sqlx::any::AnyPoolOptions;

const BATCH: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut config_path, mut count, mut out, mut users, mut expiring) = (
        "gateway.yaml".to_string(),
        1000usize,
        "tokens.txt".to_string(),
        1000usize,
        false,
    );
    while let Some(flag) = args.next() {
        if flag == "--expiring" {
            expiring = true;
            continue;
        }
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--config" => config_path = value,
            "--count" => count = value.parse()?,
            "--out" => out = value,
            "--users" => users = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let config = Config::load(config_path.as_ref())?;
    // Opening the store applies the migrations; the hasher carries the server key.
    let (store, hasher) = patgate::app::open_store(&config).await?;
    store.close().await;
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&sqlite_rwc(&config.database.url))
        .await?;

    let run = patgate::core::time::now();
    let created = patgate::core::time::now();
    let mut tx = pool.begin().await?;
    for u in 0..users {
        sqlx::query("INSERT INTO users (username, source, email, disabled, created_at) VALUES ($1, 'internal', $2, FALSE, $3) ON CONFLICT (username) DO NOTHING")
            .bind(format!("bench{u}"))
            .bind(expiring.then(|| format!("bench{u}@example.com")))
            .bind(created)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let mut done = 0;
    while done < count {
        let n = BATCH.min(count - done);
        let mut sql = String::from(
            "INSERT INTO tokens (id, username, name, token_hash, created_at, expires_at) VALUES ",
        );
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            let k = done + i;
            let token = PlainToken::generate();
            writeln!(file, "{}", token.expose())?;
            rows.push((
                format!("fill{run}x{k}"),
                format!("bench{}", k % users),
                format!("t{run}-{k}"),
                hex(&hasher.hash(token.expose().as_bytes())),
            ));
            let p = i * 5;
            if i > 0 {
                sql.push(',');
            }
            // Spread over the year without a pattern the planner could exploit.
            let expires = if expiring {
                (created + 60 + ((k as i64 * 7919) % (365 * 86_400))).to_string()
            } else {
                "NULL".to_string()
            };
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, {expires})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            ));
        }
        let mut query = sqlx::query(&sql);
        for (id, user, name, hash) in &rows {
            query = query
                .bind(id)
                .bind(user)
                .bind(name)
                .bind(hash)
                .bind(created);
        }
        query.execute(&pool).await?;
        done += n;
        if done % 100_000 == 0 {
            eprintln!("wrote {done} tokens");
        }
    }
    file.flush()?;
    eprintln!(
        "wrote {count} tokens into {}",
        patgate::config::redact_url(&config.database.url)
    );
    Ok(())
}

fn sqlite_rwc(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        format!("{url}?mode=rwc")
    } else {
        url.to_string()
    }
}
