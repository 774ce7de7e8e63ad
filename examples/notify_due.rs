//! Times how long the notifier takes to find the tokens due for an expiry e-mail, for
//! the benchmarks: the pass's own query, paged as a pass pages it, without sending.
//!
//! ```text
//! notify_due --config gateway.yaml [--days 7] [--rounds 3]
//! ```
//! Prints one JSON object: tokens found, and the time of each round in seconds.

use std::time::Instant;

use patgate::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut config_path, mut days, mut rounds) = ("gateway.yaml".to_string(), 7i64, 3usize);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--config" => config_path = value,
            "--days" => days = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let config = Config::load(config_path.as_ref())?;
    let (store, _) = patgate::app::open_store(&config).await?;
    let now = patgate::core::time::now();
    let mut seconds = Vec::with_capacity(rounds);
    let mut found = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        found = 0;
        let mut after: Option<(i64, String)> = None;
        loop {
            let batch = store
                .due_notifications(
                    days,
                    now,
                    now + days * 86_400,
                    now - 900,
                    "benchmark",
                    after.as_ref().map(|(at, id)| (*at, id.as_str())),
                    500,
                )
                .await?;
            found += batch.len();
            let full = batch.len() == 500;
            after = batch.last().map(|t| (t.expires_at, t.token_id.clone()));
            if !full {
                break;
            }
        }
        seconds.push(started.elapsed().as_secs_f64());
    }
    store.close().await;
    println!(
        "{}",
        serde_json::json!({"days": days, "due": found, "seconds": seconds})
    );
    Ok(())
}
