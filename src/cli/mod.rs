//! The command line: `serve`, `check-config`, administration of tokens and users
//! against the configured database (for bootstrap and scripting), and
//! `notify run-once` (an expiry notification pass now, for cron).
//!
//! Output contract: `token create` prints the new token as the only line on stdout (or
//! one JSON object with `--json`); every failure is one line on stderr and a non-zero
//! exit.
//!
//! Beside this file: `listing` (how tokens are printed, `token revoke --leaked`),
//! `trust_policy` (`patgate trust-policy`), `demo` (the arguments of `demo-deploy`).
//!
//! May import: every floor (it is the top one).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::accounts::sso_link;
use crate::app;
use crate::config::{self, Config};
use crate::core::scope::{MadeBy, Scope};
use crate::core::token::{Expiration, TokenHasher};
use crate::store::{self, UserSource};
use crate::tokens::issue::{self, TokenRules};

mod demo;
mod listing;
mod service_account;
mod trust_policy;

pub use demo::{demo_users, DemoArgs};
pub use listing::rfc3339;
use listing::{record_json, revoke_leaked, table};
use service_account::service_account;
pub use service_account::ServiceAccountCommand;
use trust_policy::trust_policy;
pub use trust_policy::{TrustPolicyArgs, TrustPolicyCommand};

#[derive(Debug, Parser)]
#[command(
    name = "patgate",
    version,
    about = "Personal-access-token gateway for Digital.ai Deploy"
)]
pub struct Cli {
    /// Configuration file [default: $PATGATE_CONFIG, or gateway.yaml in the current
    /// folder]; relative paths in it are read from its own folder.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Make the running gateway read its configuration again (SIGHUP to the process
    /// named in `pid_file`): what can change live is applied, the rest is named in its
    /// log; a file that fails validation changes nothing.
    Reload,
    /// Validate the configuration without starting: every check `serve` makes before it
    /// opens a socket.
    CheckConfig {
        /// Also reach the database and Deploy.
        #[arg(long)]
        connect: bool,
    },
    /// Create, list and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Disable and enable users; link them to SSO identities.
    #[command(subcommand)]
    User(UserCommand),
    /// Token expiry e-mails.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Rotate the keys that sign the JWTs Deploy trusts (jwt mode).
    #[command(subcommand, name = "jwt-key")]
    JwtKey(JwtKeyCommand),
    /// See which token HMAC keys stored tokens use, and retire an old one.
    #[command(subcommand, name = "token-key")]
    TokenKey(TokenKeyCommand),
    /// Ask Deploy whether it accepts the gateway's identity for a user, and as whom.
    CheckDeploy {
        /// The username to assert.
        #[arg(long)]
        user: String,
    },
    /// Trust policies of the CI token exchange: which pipelines' identity tokens buy a
    /// short-lived token, acting as whom.
    #[command(subcommand, name = "trust-policy")]
    TrustPolicy(TrustPolicyCommand),
    /// Service accounts: Deploy users that automation's tokens act as, looked after by
    /// owners so that a pipeline does not break when a person leaves.
    #[command(subcommand, name = "service-account")]
    ServiceAccount(ServiceAccountCommand),
    /// Run a stand-in for Deploy, for trying the gateway without one: it checks demo
    /// passwords, answers the admin check and echoes what the gateway sends. Not Deploy.
    #[command(name = "demo-deploy")]
    DemoDeploy(DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum JwtKeyCommand {
    /// List the signing keys and when each signs.
    List,
    /// Add the next key: published at once, signing after upstream.identity.jwt.rotation_lead.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum TokenKeyCommand {
    /// Live tokens per token key id (current key first).
    Status,
    /// Check that no live token still uses a previous key before it is removed from
    /// secrets.previous_token_keys.
    Retire {
        /// The key id, as `token-key status` shows it.
        id: String,
        /// Revoke the live tokens still stored under that key (they would stop working
        /// once the key is removed).
        #[arg(long)]
        revoke_remaining: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Run a notification pass now (as the daily one would) and print its summary.
    RunOnce,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (shown this once only).
    Create(CreateArgs),
    /// List a user's tokens (never their values).
    List {
        /// The username whose tokens to list.
        #[arg(long)]
        user: String,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        /// The token's id, as `token list` or `token create --json` shows it.
        #[arg(required_unless_present = "leaked", conflicts_with = "leaked")]
        id: Option<String>,
        /// Read leaked token values from standard input (one per line) and revoke each
        /// that exists, telling its owner by e-mail when notifications are set up.
        #[arg(long)]
        leaked: bool,
    },
    /// Replace a token by a new one with the same name, scope, allowlist and expiration
    /// choice, and print the new token (shown this once only).
    Rotate {
        /// The token's id.
        id: String,
        /// How long the old token keeps working (0s to 24h); a use after that revokes
        /// the new one as well.
        #[arg(long, default_value = "0s")]
        grace: String,
        /// Print one JSON object instead of the token alone.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The username the token acts as (created if new).
    #[arg(long)]
    pub user: String,
    /// The token's name, unique among the user's active tokens (at most 100 characters).
    #[arg(long)]
    pub name: String,
    /// One of 7d, 30d, 45d, 60d, 1y, never.
    #[arg(long)]
    pub expires: Expiration,
    /// Where the user comes from, if the user is new: internal, ldap or sso.
    #[arg(long, default_value = "internal")]
    pub source: UserSource,
    /// The user's e-mail address, if the user is new.
    #[arg(long)]
    pub email: Option<String>,
    /// full (everything the user may do), read (GET, HEAD and OPTIONS only) or webhook
    /// (the paths under webhooks.paths only).
    #[arg(long, default_value = "full")]
    pub scope: Scope,
    /// An address or CIDR network the token may be used from; repeat for more.
    /// Without it, anywhere.
    #[arg(long = "allow-from", value_name = "CIDR")]
    pub allow_from: Vec<String>,
    /// Print one JSON object (id, name, dates and the token) instead of the token alone.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Disable a user: every token of theirs is refused at once.
    Disable {
        /// The user's username.
        username: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's username.
        username: String,
    },
    /// Let SSO sign-ins with this provider subject become this user (an internal or
    /// LDAP user too, who stays one); without it such a sign-in is refused.
    #[command(name = "link-sso")]
    LinkSso {
        /// The user's username.
        username: String,
        /// The provider's subject for the person (the ID token's sub; a refused SSO
        /// sign-in shows it).
        #[arg(long)]
        subject: String,
    },
    /// Remove a user's link to an SSO identity.
    #[command(name = "unlink-sso")]
    UnlinkSso {
        /// The user's username.
        username: String,
    },
}

/// Where the config comes from: flag, then `PATGATE_CONFIG`, then `gateway.yaml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(config::CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("gateway.yaml"))
}

/// An administrative command: works on the database, not on a running gateway.
pub enum Admin {
    Token(TokenCommand),
    User(UserCommand),
    JwtKey(JwtKeyCommand),
    TokenKey(TokenKeyCommand),
    CheckDeploy { user: String },
    TrustPolicy(TrustPolicyCommand),
    ServiceAccount(ServiceAccountCommand),
}

/// Runs an administrative command against the configured database (which must exist),
/// writing its answer to `out`. A command that changed the database says which one on
/// stderr.
pub async fn run_admin_to(
    config: &Config,
    command: Admin,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if run_quietly(config, command, out).await? {
        say(&format!(
            "changed database {} (configuration {})",
            config::redact_url(&config.database.url),
            config.source_text()
        ));
    }
    Ok(())
}

/// Runs an administrative command and returns what it would print (for programs that
/// embed the command line, and tests).
pub async fn run_admin(config: &Config, command: Admin) -> anyhow::Result<String> {
    let mut out = Vec::new();
    run_quietly(config, command, &mut out).await?;
    Ok(String::from_utf8_lossy(&out).trim_end().to_string())
}

/// Runs the command without the "changed database" line (a program that embeds the
/// command line knows which database it named); `Ok(true)` when it changed it.
async fn run_quietly(config: &Config, command: Admin, out: &mut dyn Write) -> anyhow::Result<bool> {
    let (store, hasher) = app::open_existing_store(config).await?;
    let result = admin(config, &store, &hasher, command, out).await;
    store.close().await;
    result
}

/// One administrative command; `Ok(true)` when it changed the database.
async fn admin(
    config: &Config,
    store: &store::Store,
    hasher: &TokenHasher,
    command: Admin,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let store = store.clone();
    let mut changed = true;
    let output = match command {
        Admin::Token(TokenCommand::Create(args)) => {
            issue::check_name("--user", &args.user).map_err(anyhow::Error::msg)?;
            issue::check_name("--name", &args.name).map_err(anyhow::Error::msg)?;
            // A name in another case or form finds the user who has it.
            let user = store
                .ensure_user(&args.user, args.source, args.email.as_deref())
                .await?;
            let source = store.user(&user).await?.map_or(args.source, |u| u.source);
            let rules = TokenRules {
                scope: args.scope,
                allowed_addresses: args.allow_from,
                made_by: MadeBy::Cli,
            };
            let (record, token) = issue::issue_with(
                &store,
                hasher,
                &user,
                source,
                &args.name,
                args.expires,
                &rules,
            )
            .await?;
            audit(&store, "token.created", &record.username, Some(&record.id)).await;
            let shown = if args.json {
                let mut value = record_json(&record);
                value["token"] = token.expose().into();
                value.to_string()
            } else {
                token.expose().to_string()
            };
            if let Err(e) = write_line(out, &shown) {
                // Nobody saw the token: it must not stay valid.
                store.revoke_token(&record.id).await?;
                audit(&store, "token.deleted", &record.username, Some(&record.id)).await;
                say(&format!(
                    "changed database {} (configuration {})",
                    config::redact_url(&config.database.url),
                    config.source_text()
                ));
                anyhow::bail!(
                    "could not write the token to standard output ({e}); token {} was revoked again, since nobody could see it",
                    record.id
                );
            }
            return Ok(true);
        }
        Admin::Token(TokenCommand::List { user, json }) => {
            changed = false;
            let Some(found) = store.user(&user).await? else {
                anyhow::bail!(
                    "no user {user:?}; tokens belong to users that signed in or were given one"
                );
            };
            let records = store.list_tokens(&found.username).await?;
            if json {
                serde_json::Value::Array(records.iter().map(record_json).collect()).to_string()
            } else {
                table(&records)
            }
        }
        Admin::Token(TokenCommand::Revoke { leaked: true, .. }) => {
            let (text, changed) = revoke_leaked(config, &store, hasher).await?;
            write_line(out, &text)?;
            return Ok(changed);
        }
        Admin::Token(TokenCommand::Rotate { id, grace, json }) => {
            let grace = crate::tokens::issue::parse_grace(&grace).map_err(anyhow::Error::msg)?;
            let old = store.get_token(&id).await?;
            if old.revoked_at.is_some() || old.replaced_by.is_some() {
                anyhow::bail!(
                    "token {id} is revoked or was rotated already; rotate its newest successor"
                );
            }
            let source = store
                .user(&old.username)
                .await?
                .map_or(UserSource::Internal, |u| u.source);
            let (rotated, token, _) =
                issue::rotate(&store, hasher, &old, source, grace, MadeBy::Cli).await?;
            audit(
                &store,
                "token.rotated",
                &old.username,
                Some(&rotated.new.id),
            )
            .await;
            let shown = if json {
                let mut value = record_json(&rotated.new);
                value["token"] = token.expose().into();
                value["old_token_valid_until"] = rfc3339(rotated.old.grace_until);
                value.to_string()
            } else {
                token.expose().to_string()
            };
            if let Err(e) = write_line(out, &shown) {
                store.revoke_token(&rotated.new.id).await?;
                anyhow::bail!(
                    "could not write the token to standard output ({e}); the new token {} was revoked again",
                    rotated.new.id
                );
            }
            return Ok(true);
        }
        Admin::Token(TokenCommand::Revoke { id, .. }) => {
            let id = id.unwrap_or_default();
            let before = store.get_token(&id).await?;
            if before.revoked_at.is_some() {
                write_line(
                    out,
                    &format!(
                        "token {} ({:?} of {}) was already revoked at {}; nothing changed",
                        before.id,
                        before.name,
                        before.username,
                        rfc3339(before.revoked_at).as_str().unwrap_or_default()
                    ),
                )?;
                return Ok(false);
            }
            let record = store.revoke_token(&id).await?;
            audit(&store, "token.deleted", &record.username, Some(&record.id)).await;
            format!(
                "revoked token {} ({:?} of {})",
                record.id, record.name, record.username
            )
        }
        Admin::User(UserCommand::Disable { username }) => {
            let username = stored_name(&store, &username).await?;
            store.set_user_disabled(&username, true).await?;
            crate::accounts::service::check_owners(&store).await?;
            store.delete_user_sessions(&username).await?;
            audit(&store, "user.disabled", &username, None).await;
            format!("disabled user {username}; their tokens are refused")
        }
        Admin::JwtKey(command) => {
            changed = matches!(command, JwtKeyCommand::Rotate);
            jwt_key(config, &store, hasher, command).await?
        }
        Admin::TokenKey(TokenKeyCommand::Status) => {
            changed = false;
            let counts = store.live_tokens_by_key().await?;
            let mut out = format!("{:<10} {:<9} {}", "KEY", "ROLE", "LIVE TOKENS");
            for (i, id) in hasher.key_ids().iter().enumerate() {
                let n = counts.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n);
                let role = if i == 0 { "current" } else { "previous" };
                out.push_str(&format!("\n{id:<10} {role:<9} {n}"));
            }
            for (id, n) in counts.iter().filter(|(k, _)| !hasher.key_ids().contains(k)) {
                let id = if id.is_empty() { "unknown" } else { id };
                out.push_str(&format!(
                    "\n{id:<10} {:<9} {n}  (key not configured: these tokens do not verify)",
                    "missing"
                ));
            }
            out
        }
        Admin::TokenKey(TokenKeyCommand::Retire {
            id,
            revoke_remaining,
        }) => {
            if id == hasher.key_id() {
                anyhow::bail!("{id} is the current token key; rotate to a new key first (see README, Key rotation)");
            }
            let counts = store.live_tokens_by_key().await?;
            let live = counts.iter().find(|(k, _)| *k == id).map_or(0, |(_, n)| *n);
            if live > 0 && !revoke_remaining {
                anyhow::bail!("{live} live tokens are still stored under key {id}; each moves to the current key when next used. Wait, or pass --revoke-remaining to revoke them");
            }
            let revoked = if live > 0 {
                store.revoke_by_key(&id).await?
            } else {
                Vec::new()
            };
            for token in &revoked {
                audit(&store, "token.deleted", &token.username, Some(&token.id)).await;
            }
            format!(
                "no live token uses key {id} any more ({} revoked); remove it from secrets.previous_token_keys on every replica and restart them",
                revoked.len()
            )
        }
        Admin::TrustPolicy(command) => return trust_policy(&store, command, out).await,
        Admin::ServiceAccount(command) => return service_account(&store, command, out).await,
        Admin::CheckDeploy { user } => {
            changed = false;
            let (ok, message) =
                crate::app::deploy_check::check(config, &store, hasher, &user).await?;
            if !ok {
                anyhow::bail!("{message}");
            }
            message
        }
        Admin::User(UserCommand::Enable { username }) => {
            let username = stored_name(&store, &username).await?;
            store.set_user_disabled(&username, false).await?;
            crate::accounts::service::check_owners(&store).await?;
            audit(&store, "user.enabled", &username, None).await;
            format!("enabled user {username}")
        }
        Admin::User(UserCommand::LinkSso { username, subject }) => {
            let issuer = config.sso.as_ref().map(|s| s.issuer.trim_end_matches('/'));
            let username =
                sso_link::link(&store, issuer, &username, &subject, command_line()).await?;
            format!(
                "linked user {username} to SSO subject {:?} at {}: an SSO sign-in with it becomes {username}",
                subject.trim(),
                issuer.unwrap_or_default()
            )
        }
        Admin::User(UserCommand::UnlinkSso { username }) => {
            let issuer = config.sso.as_ref().map(|s| s.issuer.trim_end_matches('/'));
            let username = sso_link::unlink(&store, issuer, &username, command_line()).await?;
            format!("unlinked user {username} from its SSO identity")
        }
    };
    write_line(out, &output)?;
    Ok(changed)
}

/// The command line, as the audit log names it.
fn command_line() -> sso_link::Requester {
    sso_link::Requester {
        actor: "patgate-cli".into(),
        ip: None,
    }
}

/// The stored name of the user `name` finds (in any case or form).
async fn stored_name(store: &store::Store, name: &str) -> anyhow::Result<String> {
    Ok(store
        .user(name)
        .await?
        .ok_or_else(|| store::StoreError::NoSuchUser(name.to_string()))?
        .username)
}

/// Writes one answer and flushes it; a closed pipe or a full disk is an error, never a
/// panic.
pub fn write_line(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    writeln!(out, "{text}")?;
    out.flush()
}

/// One line on stderr, prefixed `patgate: `; a stderr that cannot be written is ignored
/// rather than a reason to panic.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "patgate: {line}");
}

async fn jwt_key(
    config: &Config,
    store: &store::Store,
    hasher: &TokenHasher,
    command: JwtKeyCommand,
) -> anyhow::Result<String> {
    use crate::config::{IdentityMode, JwtAlgorithm};
    let settings = &config.upstream.identity.jwt;
    if config.upstream.identity.mode != IdentityMode::Jwt
        || settings.algorithm == JwtAlgorithm::Hs256
    {
        anyhow::bail!("signing keys are used with upstream.identity.mode jwt and an RS256 or EdDSA algorithm; HS256 uses upstream.identity.jwt.secret");
    }
    let sealer = std::sync::Arc::new(crate::core::sealed::Sealer::new(hasher.raw_keys()));
    let minter = crate::identity::jwt::JwtMinter::start(settings, store.clone(), sealer).await?;
    if let JwtKeyCommand::Rotate = command {
        let added = minter.rotate().await?;
        return Ok(format!(
            "added {} key {}: published now, signs from {}; the key it replaces stays published until {}",
            settings.algorithm.as_str(),
            added.kid,
            rfc3339(Some(added.not_before)).as_str().unwrap_or_default(),
            rfc3339(Some(added.not_before + minter.published_after())).as_str().unwrap_or_default(),
        ));
    }
    let signing = minter.signing_kid().unwrap_or_default();
    let mut out = format!("{:<24} {:<22} {}", "KID", "SIGNS FROM", "STATE");
    for (kid, not_before) in minter.describe() {
        let state = if kid == signing {
            "signing"
        } else if not_before > crate::core::time::now() {
            "next"
        } else {
            "replaced (published until its JWTs expire)"
        };
        let from = rfc3339(Some(not_before));
        out.push_str(&format!(
            "\n{kid:<24} {:<22} {state}",
            from.as_str().unwrap_or_default()
        ));
    }
    Ok(out)
}

/// Runs a notify command; returns the line to print. A pass in which e-mails failed is
/// an error (its summary says how many), so that cron reports it.
pub async fn run_notify(config: &Config, command: NotifyCommand) -> anyhow::Result<String> {
    let (store, _) = app::open_existing_store(config).await?;
    let notifier = crate::notify::Notifier::new(
        config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::default()),
    )?;
    let result = match command {
        NotifyCommand::RunOnce => {
            notifier
                .run_pass(crate::core::time::now(), crate::notify::Cause::Command)
                .await
        }
    };
    store.close().await;
    let report = result?;
    // A pass records itself, and each e-mail it sends or fails to send.
    let database = format!(
        "changed database {} (configuration {})",
        config::redact_url(&config.database.url),
        config.source_text()
    );
    if report.failed > 0 {
        // Still one line, as every failure is.
        anyhow::bail!(
            "{}; see GET /patgate/api/v1/notifications for the reasons; {database}",
            report.summary()
        );
    }
    say(&database);
    Ok(report.summary())
}

/// Records a command-line action in the audit log (actor `patgate-cli`).
async fn audit(store: &store::Store, action: &'static str, username: &str, token_id: Option<&str>) {
    let event = store::AuditEvent {
        actor: Some("patgate-cli".into()),
        action,
        username: Some(username.to_string()),
        token_id: token_id.map(str::to_string),
        ..store::AuditEvent::default()
    };
    if let Err(e) = store.audit(event).await {
        tracing::warn!(error = %e, "could not write an audit entry");
    }
}
