//! Fills a patgate database with SSO users as a sign-in leaves them (bound to their
//! subject at the provider, roles from the sign-in, the provider's refresh token kept
//! sealed), for the re-validation benchmark.
//!
//! ```text
//! fill_sso_users --config gateway.yaml --issuer URL --input minted.json [--due-in SECONDS]
//! ```
//! `--input` is the JSON list the test provider's `POST /__control/mint` answers:
//! `[{"sub", "username", "email", "refresh_token"}]`. Every user comes due for
//! re-validation `--due-in` seconds from now (default 0), all at once: the worst case.

use patgate::config::Config;
use patgate::core::sealed::Sealer;
use patgate::signin::refresh::SEAL_CONTEXT;
use patgate::store::{UserSource, FROM_SIGNIN};

#[derive(serde::Deserialize)]
struct Minted {
    sub: String,
    username: String,
    email: String,
    refresh_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut config_path, mut issuer, mut input, mut due_in) = (
        "gateway.yaml".to_string(),
        String::new(),
        String::new(),
        0i64,
    );
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--config" => config_path = value,
            "--issuer" => issuer = value,
            "--input" => input = value,
            "--due-in" => due_in = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(!issuer.is_empty(), "--issuer is required");
    let minted: Vec<Minted> = serde_json::from_slice(&std::fs::read(&input)?)?;
    let config = Config::load(config_path.as_ref())?;
    // Opening the store applies the migrations; the hasher carries the token keys the
    // refresh tokens are sealed under, as the gateway seals them.
    let (store, hasher) = patgate::app::open_store(&config).await?;
    let sealer = Sealer::new(hasher.raw_keys());
    let due = patgate::core::time::now() + due_in;
    let roles = vec!["deployers".to_string()];
    for (i, user) in minted.iter().enumerate() {
        let username = store
            .ensure_user(&user.username, UserSource::Sso, Some(&user.email))
            .await?;
        store
            .bind_sso_identity(&issuer, &user.sub, &username, None)
            .await?;
        store
            .set_roles(&username, &roles, FROM_SIGNIN, false)
            .await?;
        let sealed = sealer.seal(user.refresh_token.as_bytes(), SEAL_CONTEXT);
        store
            .keep_refresh_token(&username, Some(&sealed), due)
            .await?;
        if (i + 1) % 2_000 == 0 {
            eprintln!("wrote {} SSO users", i + 1);
        }
    }
    store.close().await;
    eprintln!(
        "wrote {} SSO users into {}, due in {due_in} s",
        minted.len(),
        patgate::config::redact_url(&config.database.url)
    );
    Ok(())
}
