//! `patgate service-account create|list|set-owners|delete`: service accounts and their
//! owners, with the checks the API makes. Their tokens are made as any user's:
//! `patgate token create --user NAME`.

use std::io::Write;

use clap::Subcommand;

use super::write_line;
use crate::api::service_accounts::{
    check_account_name, check_body, ServiceAccountBody, ServiceAccountView,
};
use crate::store;

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// Make a Deploy user a service account, looked after by its owners.
    Create {
        /// The Deploy user its tokens act as.
        name: String,
        /// A user who creates, rotates and deletes its tokens and receives its reminders;
        /// repeat for more (at least one).
        #[arg(long = "owner", value_name = "USER", required = true)]
        owners: Vec<String>,
        /// What the account is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the service accounts, their owners and live tokens.
    List {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Replace an account's owners (and, if given, its description).
    SetOwners {
        /// The account's name.
        name: String,
        /// The new owners; repeat for more (at least one).
        #[arg(long = "owner", value_name = "USER", required = true)]
        owners: Vec<String>,
        /// A new description (the old one is kept otherwise).
        #[arg(long)]
        description: Option<String>,
    },
    /// Retire an account: its tokens are revoked; the Deploy user is not touched.
    Delete {
        /// The account's name.
        name: String,
    },
}

/// `patgate service-account …`; `Ok(true)` when it changed the database.
pub(super) async fn service_account(
    store: &store::Store,
    command: ServiceAccountCommand,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let checked = |name: &str, description: String, owners: Vec<String>| {
        check_account_name(name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let body = ServiceAccountBody {
            name: Some(name.to_string()),
            description,
            owners,
        };
        check_body(&body).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        anyhow::Ok(body)
    };
    let (action, account) = match command {
        ServiceAccountCommand::Create {
            name,
            owners,
            description,
        } => {
            let body = checked(&name, description, owners)?;
            let stored = store
                .write_service_account(
                    &name,
                    &body.description,
                    &body.owners,
                    Some("patgate-cli"),
                    false,
                )
                .await?;
            (
                "service_account.created",
                store.service_account(&stored).await?,
            )
        }
        ServiceAccountCommand::SetOwners {
            name,
            owners,
            description,
        } => {
            let current = store.service_account(&name).await?;
            let body = checked(
                &current.name,
                description.unwrap_or(current.description.clone()),
                owners,
            )?;
            store
                .write_service_account(&current.name, &body.description, &body.owners, None, true)
                .await?;
            crate::accounts::service::check_owners(store).await?;
            (
                "service_account.updated",
                store.service_account(&current.name).await?,
            )
        }
        ServiceAccountCommand::List { json } => {
            let views: Vec<ServiceAccountView> = store
                .service_accounts(None)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            let text = if json {
                serde_json::to_string(&views)?
            } else if views.is_empty() {
                "no service accounts".to_string()
            } else {
                views.iter().map(line).collect::<Vec<_>>().join("\n")
            };
            write_line(out, &text)?;
            return Ok(false);
        }
        ServiceAccountCommand::Delete { name } => {
            let revoked = crate::accounts::service::delete(
                store,
                &name,
                Some("patgate-cli".into()),
                "local".into(),
                Some("cli"),
            )
            .await?;
            write_line(
                out,
                &format!("deleted service account {name}; {revoked} tokens revoked"),
            )?;
            return Ok(true);
        }
    };
    store
        .audit_or_log(store::AuditEvent {
            actor: Some("patgate-cli".into()),
            action,
            username: Some(account.name.clone()),
            detail: Some(serde_json::json!({
                "description": account.description,
                "owners": account.owners.iter().map(|o| &o.username).collect::<Vec<_>>(),
            })),
            ..store::AuditEvent::default()
        })
        .await;
    write_line(out, &line(&account.into()))?;
    Ok(true)
}

fn line(v: &ServiceAccountView) -> String {
    let owners: Vec<String> = v
        .owners
        .iter()
        .map(|o| {
            if o.active {
                o.username.clone()
            } else {
                format!("{} (inactive)", o.username)
            }
        })
        .collect();
    format!(
        "{}  owners {}  live tokens {}{}",
        v.name,
        owners.join(", "),
        v.live_tokens,
        if v.no_active_owner {
            "  NO ACTIVE OWNER: name new owners"
        } else {
            ""
        }
    )
}
