//! `patgate trust-policy create|list|delete`: the CI token exchange's policies, with the
//! checks the API makes.

use std::io::Write;

use clap::{Args, Subcommand};

use super::write_line;
use crate::store;

#[derive(Debug, Subcommand)]
pub enum TrustPolicyCommand {
    /// Create a trust policy.
    Create(TrustPolicyArgs),
    /// List the trust policies, with their use.
    List {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Delete a trust policy; tokens it issued live out their minutes.
    Delete {
        /// The policy's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct TrustPolicyArgs {
    /// The policy's name.
    #[arg(long)]
    pub name: String,
    /// The CI system's token issuer, e.g. https://token.actions.githubusercontent.com.
    #[arg(long, required_unless_present = "preset")]
    pub issuer: Option<String>,
    /// github or gitlab: the issuer of GitHub Actions or GitLab.com.
    #[arg(long)]
    pub preset: Option<String>,
    /// The aud claim the pipeline asks its CI system for.
    #[arg(long)]
    pub audience: String,
    /// A condition CLAIM=VALUE (VALUE may use * and ?); repeat, all must match.
    #[arg(long = "claim", value_name = "CLAIM=VALUE", required = true)]
    pub claims: Vec<String>,
    /// The Deploy user the issued tokens act as.
    #[arg(long)]
    pub user: String,
    /// full, read or webhook.
    #[arg(long, default_value = "full")]
    pub scope: String,
    /// An address or network the issued tokens may be used from; repeat for more.
    #[arg(long = "allow-from", value_name = "CIDR")]
    pub allow_from: Vec<String>,
    /// How long an issued token lives, 1m to 1h.
    #[arg(long, default_value = "15m")]
    pub lifetime: String,
}

/// `patgate trust-policy …`; `Ok(true)` when it changed the database.
pub(super) async fn trust_policy(
    store: &store::Store,
    command: TrustPolicyCommand,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    use crate::api::trust::{policy_of, TrustPolicyBody, TrustPolicyView};
    match command {
        TrustPolicyCommand::Create(args) => {
            let mut claims = std::collections::BTreeMap::new();
            for condition in &args.claims {
                let Some((claim, value)) = condition.split_once('=') else {
                    anyhow::bail!(
                        "--claim {condition:?}: write CLAIM=VALUE, e.g. repository=octo-org/app"
                    );
                };
                claims.insert(claim.trim().to_string(), value.to_string());
            }
            let body = TrustPolicyBody {
                preset: args.preset,
                issuer: args.issuer,
                audience: Some(args.audience),
                claims,
                user: Some(args.user),
                scope: Some(args.scope),
                allowed_addresses: args.allow_from,
                lifetime: Some(args.lifetime),
                ..TrustPolicyBody::default()
            };
            let policy = policy_of(body, args.name, crate::core::time::now())
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            store.create_trust_policy(&policy).await?;
            store
                .audit_or_log(store::AuditEvent {
                    actor: Some("patgate-cli".into()),
                    action: "trust_policy.created",
                    detail: Some(serde_json::json!({"name": policy.name, "issuer": policy.issuer, "user": policy.username})),
                    ..store::AuditEvent::default()
                })
                .await;
            write_line(
                out,
                &format!(
                    "created trust policy {}: tokens of {} for {} act as {} for {}",
                    policy.name,
                    policy.issuer,
                    policy.audience,
                    policy.username,
                    TrustPolicyView::from(&policy).lifetime
                ),
            )?;
            Ok(true)
        }
        TrustPolicyCommand::List { json } => {
            let policies = store.trust_policies().await?;
            let views: Vec<TrustPolicyView> = policies.iter().map(TrustPolicyView::from).collect();
            let text = if json {
                serde_json::to_string(&views)?
            } else if views.is_empty() {
                "no trust policies".to_string()
            } else {
                views
                    .iter()
                    .map(|v| {
                        format!(
                            "{}  issuer {}  audience {}  user {}  lifetime {}  exchanges {}  last used {}",
                            v.name,
                            v.issuer,
                            v.audience,
                            v.user,
                            v.lifetime,
                            v.exchanges,
                            v.last_used_at.as_deref().unwrap_or("never")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            write_line(out, &text)?;
            Ok(false)
        }
        TrustPolicyCommand::Delete { name } => {
            store.delete_trust_policy(&name).await?;
            store
                .audit_or_log(store::AuditEvent {
                    actor: Some("patgate-cli".into()),
                    action: "trust_policy.deleted",
                    detail: Some(serde_json::json!({"name": name})),
                    ..store::AuditEvent::default()
                })
                .await;
            write_line(out, &format!("deleted trust policy {name}"))?;
            Ok(true)
        }
    }
}
