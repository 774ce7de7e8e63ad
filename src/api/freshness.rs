//! How fresh SSO users' roles and status are, as the settings and the users list show
//! it: pushed by SCIM Groups (within a second), re-validated with the provider every
//! `sso.revalidate_every`, or as of each user's last sign-in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::time::rfc3339;
use crate::store::{FreshnessSummary, StoreError, UserFreshness};

/// `sso_roles_freshness` in the settings (read-only; ignored when sent back).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolesFreshness {
    /// `scim` (SCIM Groups push roles), `revalidation` (the provider is asked again
    /// every `revalidate_every`) or `sign-in` (roles as of each user's last sign-in).
    #[schema(example = "revalidation")]
    pub mode: String,
    /// The same in words, as the settings page shows it.
    pub summary: String,
    /// The longest a change at the provider takes to reach the tokens, in seconds;
    /// `null`: unbounded (until the user signs in again).
    pub bound_seconds: Option<u64>,
    /// `sso.revalidate_every` (`null`: off or no SSO).
    #[schema(example = "15m")]
    pub revalidate_every: Option<String>,
    /// The last re-validation any replica made.
    pub last_run_at: Option<String>,
    pub sso_users: i64,
    pub scim_groups: i64,
    /// SSO users by who last set their roles: `scim`, `revalidation`, `signin`, `none`.
    pub roles_by_source: BTreeMap<String, i64>,
    /// SSO users whose tokens are suspended because the provider refused them.
    pub suspended: i64,
    /// SSO users the gateway cannot ask the provider about (no refresh token).
    pub without_refresh_token: i64,
    /// SSO users whose last re-validation found the provider unreachable.
    pub unreachable: i64,
}

fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn words(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

impl RolesFreshness {
    pub fn new(
        summary: FreshnessSummary,
        sso: bool,
        revalidate_every: Option<Duration>,
    ) -> RolesFreshness {
        let every = revalidate_every.filter(|_| sso);
        let last_run = summary
            .last_run_at
            .map(|at| format!("last run {}", rfc3339(at)))
            .unwrap_or_else(|| "not run yet".into());
        let revalidated = every.map(|every| {
            let mut text = format!(
                "re-validated every {} ({last_run}, {} suspended",
                words(every),
                summary.suspended
            );
            if summary.without_refresh_token > 0 {
                text.push_str(&format!(
                    ", {} without a refresh token: as of their last sign-in",
                    summary.without_refresh_token
                ));
            }
            if summary.unreachable > 0 {
                text.push_str(&format!(
                    ", {} not reached at the last attempt",
                    summary.unreachable
                ));
            }
            text.push(')');
            text
        });
        let (mode, text, bound) = if summary.scim_groups > 0 {
            let mut text = format!(
                "pushed by SCIM ({} groups): a change reaches every replica within 1 s",
                summary.scim_groups
            );
            if let Some(revalidated) = &revalidated {
                text.push_str("; users outside SCIM ");
                text.push_str(revalidated);
            }
            ("scim", text, Some(1))
        } else if let (Some(every), Some(text)) = (every, revalidated) {
            ("revalidation", text, Some(every.as_secs() + 1))
        } else if sso {
            (
                "sign-in",
                "as of last sign-in: a change at the provider reaches a user's tokens only when they sign in again".into(),
                None,
            )
        } else {
            ("sign-in", "no SSO is configured".into(), None)
        };
        RolesFreshness {
            mode: mode.into(),
            summary: text,
            bound_seconds: bound,
            revalidate_every: every.map(duration_text),
            last_run_at: summary.last_run_at.map(rfc3339),
            sso_users: summary.sso_users,
            scim_groups: summary.scim_groups,
            roles_by_source: summary.by_source,
            suspended: summary.suspended,
            without_refresh_token: summary.without_refresh_token,
            unreachable: summary.unreachable,
        }
    }
}

/// What the settings show: read from the store, with the configuration.
pub async fn roles_freshness(api: &super::Api) -> Result<RolesFreshness, StoreError> {
    let summary = api.store.freshness_summary().await?;
    Ok(RolesFreshness::new(
        summary,
        api.signin.oidc().is_some(),
        api.signin.revalidate_every(),
    ))
}

/// An SSO user's roles and how fresh they are, in the users list.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRolesView {
    /// The roles the user carries to Deploy (the JWT's roles claim).
    pub roles: Vec<String>,
    /// Who set them last: `scim`, `revalidation`, `signin` (`null`: nobody yet).
    pub roles_source: Option<String>,
    pub roles_updated_at: Option<String>,
    /// The last re-validation with the provider.
    pub revalidated_at: Option<String>,
    /// `ok`, `refused`, `unreachable` (the last re-validation), `no_refresh_token`,
    /// or `null` (never asked).
    pub revalidation: Option<String>,
    /// Since when the user's tokens are suspended (the provider refused them).
    pub suspended_at: Option<String>,
}

impl From<UserFreshness> for UserRolesView {
    fn from(f: UserFreshness) -> UserRolesView {
        let revalidation = match (f.refresh_token, f.revalidation_result) {
            (_, Some(result)) if result != "ok" => Some(result),
            (Some(false), _) => Some("no_refresh_token".into()),
            (_, result) => result,
        };
        UserRolesView {
            roles: f.roles,
            roles_source: f.roles_source,
            roles_updated_at: f.roles_updated_at.map(rfc3339),
            revalidated_at: f.revalidated_at.map(rfc3339),
            revalidation,
            suspended_at: f.suspended_at.map(rfc3339),
        }
    }
}
