//! `/patgate/api/v1/token-inventory` (administrators): every token, of users and service
//! accounts alike, filtered, sorted, paged or exported as CSV; and the revocation of a
//! selection, or, in an emergency, of every token.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{query, ApiRef, JsonBody, Page};
use crate::api::caller::Caller;
use crate::api::tokens::{expires_in, ExpiresIn};
use crate::core::error::ApiError;
use crate::core::pattern::inventory as rules;
use crate::core::scope::{MadeBy, Scope};
use crate::core::time::rfc3339;
use crate::store::{
    AuditEvent, InventoryItem, InventoryQuery, SortKey, StateFilter, TokenState, OWNER_SOURCES,
};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InventoryParams {
    /// The user or service account the tokens belong to (exactly).
    pub owner: Option<String>,
    #[param(schema_with = rules::source_schema)]
    pub source: Option<String>,
    #[param(schema_with = rules::scope_schema)]
    pub scope: Option<String>,
    #[param(schema_with = rules::state_schema)]
    pub state: Option<String>,
    /// Active (not revoked, not expired), and expiring within this many days.
    #[param(schema_with = rules::days_schema)]
    pub expires_within_days: Option<i64>,
    /// Not used for at least this many days (a token never used counts from its creation).
    #[param(schema_with = rules::days_schema)]
    pub unused_for_days: Option<i64>,
    #[param(schema_with = rules::made_by_schema)]
    pub made_by: Option<String>,
    #[param(schema_with = rules::sort_schema)]
    pub sort: Option<String>,
    #[param(schema_with = crate::core::pattern::page_schema)]
    pub page: Option<i64>,
    #[param(schema_with = crate::core::pattern::per_page_schema)]
    pub per_page: Option<i64>,
    #[param(schema_with = rules::format_schema)]
    pub format: Option<String>,
}

/// A token as the inventory lists it: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryToken {
    pub id: String,
    pub name: String,
    /// The user or service account it belongs to.
    pub owner: String,
    /// `internal`, `ldap`, `sso` or `service_account`.
    pub owner_source: String,
    pub state: TokenState,
    pub scope: Scope,
    /// `page`, `cli`, `api`, `exchange`; null for tokens made before this was kept.
    pub made_by: Option<MadeBy>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub expires_in: ExpiresIn,
    pub last_used_at: Option<String>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<String>,
    /// Empty: usable from anywhere.
    pub allowed_addresses: Vec<String>,
    pub rotated_from: Option<String>,
    pub replaced_by: Option<String>,
    pub grace_until: Option<String>,
}

impl InventoryToken {
    fn new(item: InventoryItem, now: i64) -> InventoryToken {
        let t = item.token;
        InventoryToken {
            expires_in: expires_in(t.expires_at, now),
            id: t.id,
            name: t.name,
            owner: t.username,
            owner_source: item.owner_source,
            state: item.state,
            scope: t.scope,
            made_by: t.made_by,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            last_used_ip: t.last_used_ip,
            revoked_at: t.revoked_at.map(rfc3339),
            allowed_addresses: t.allowed_addresses,
            rotated_from: t.rotated_from,
            replaced_by: t.replaced_by.filter(|r| !r.is_empty()),
            grace_until: t.grace_until.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryPage {
    pub tokens: Vec<InventoryToken>,
    /// How many tokens match the filters in all, counted up to 10,000.
    pub total: i64,
    /// `true`: more than 10,000 match and `total` says 10,000; narrow the filters to
    /// count them.
    pub total_capped: bool,
    pub page: i64,
    pub per_page: i64,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn days(what: &str, days: Option<i64>) -> Result<Option<i64>, ApiError> {
    match days {
        Some(d) if !(0..=rules::DAYS_MAX).contains(&d) => Err(invalid(format!(
            "{what} {d}: between 0 and {}",
            rules::DAYS_MAX
        ))),
        other => Ok(other),
    }
}

/// The store's query for `params`; empty values filter nothing.
fn inventory_query(params: &InventoryParams, page: Page) -> Result<InventoryQuery, ApiError> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let source = given(&params.source);
    if let Some(source) = &source {
        if !OWNER_SOURCES.contains(&source.as_str()) {
            return Err(invalid(format!(
                "source {source:?}: use internal, ldap, sso or service_account"
            )));
        }
    }
    let scope = given(&params.scope)
        .map(|s| s.parse::<Scope>())
        .transpose()
        .map_err(invalid)?;
    let expires_within_days = days("expires_within_days", params.expires_within_days)?;
    let state = match given(&params.state).as_deref() {
        None => None,
        Some("active") => Some(StateFilter::Active),
        Some("expiring") => Some(StateFilter::Expiring(
            expires_within_days.unwrap_or(rules::EXPIRING_DAYS_DEFAULT),
        )),
        Some("expired") => Some(StateFilter::Expired),
        Some("revoked") => Some(StateFilter::Revoked),
        Some(other) => {
            return Err(invalid(format!(
                "state {other:?}: use active, expiring, expired or revoked"
            )))
        }
    };
    let made_by = match given(&params.made_by).as_deref() {
        None => None,
        Some("unknown") => Some(None),
        Some(m) => Some(Some(m.parse::<MadeBy>().map_err(|e| {
            invalid(format!(
                "{e}, or unknown for tokens made before it was kept"
            ))
        })?)),
    };
    let sort_text = given(&params.sort).unwrap_or_else(|| "-created_at".into());
    let (descending, key) = match sort_text.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, sort_text.as_str()),
    };
    let sort = SortKey::NAMES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            invalid(format!(
                "sort {sort_text:?}: use {}, each with a leading - for descending",
                rules::SORTS.join(", ")
            ))
        })?;
    Ok(InventoryQuery {
        owner: given(&params.owner),
        source,
        scope,
        state,
        // `state=expiring` has taken the days already.
        expires_within_days: expires_within_days
            .filter(|_| !matches!(state, Some(StateFilter::Expiring(_)))),
        unused_for_days: days("unused_for_days", params.unused_for_days)?,
        made_by,
        sort,
        descending,
        offset: page.offset(),
        limit: page.per_page,
    })
}

/// Every token, filtered, sorted and paged (newest first by default), or exported as
/// CSV with `format=csv`.
#[utoipa::path(get, path = "/patgate/api/v1/token-inventory", tag = "admin",
    operation_id = "token_inventory_list", params(InventoryParams),
    security(("password" = []), ("session" = [])),
    responses((status = 200,
            description = "a page of tokens; with `format=csv`, every matching token as text/csv",
            content((InventoryPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_query`: a filter, the sort or the page is invalid"),
        (status = 422, description = "`too_many_rows`: more than 100,000 tokens match for a CSV export; narrow the filters")))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
    params: Result<Query<InventoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let params = query(params)?;
    let csv = match params.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(invalid(format!("format {other:?}: use json or csv"))),
    };
    let page = if csv {
        Page {
            page: 1,
            per_page: rules::CSV_ROWS_MAX + 1,
        }
    } else {
        Page::new(params.page, params.per_page)?
    };
    let q = inventory_query(&params, page)?;
    let (items, total, capped) = api.store.token_inventory(&q).await?;
    let now = crate::core::time::now();
    if csv {
        if items.len() as i64 > rules::CSV_ROWS_MAX {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_rows",
                format!(
                    "more than {} tokens match, the most a CSV export holds: narrow the \
                     filters (owner, source, state, …)",
                    rules::CSV_ROWS_MAX
                ),
            ));
        }
        let body = render_csv(items.into_iter().map(|i| InventoryToken::new(i, now)));
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"patgate-tokens.csv\"",
                ),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(InventoryPage {
        tokens: items
            .into_iter()
            .map(|i| InventoryToken::new(i, now))
            .collect(),
        total,
        total_capped: capped,
        page: page.page,
        per_page: page.per_page,
    })
    .into_response())
}

/// Which tokens to revoke: some by id, or every one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSelection {
    /// Up to 1000 token ids.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub ids: Option<Vec<String>>,
    /// Every token that works, of every user and service account.
    #[serde(default)]
    pub all: Option<bool>,
    /// With `all`: exactly `revoke every token`.
    #[serde(default)]
    pub confirm: Option<String>,
}

/// The revocation's body as the document states it: one of two shapes.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum RevokeRequest {
    Ids(RevokeIds),
    All(RevokeAll),
}

/// Some tokens, by id.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct RevokeIds {
    /// 1 to 1000 token ids.
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<String>,
}

/// Every token that works, of every user and service account.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct RevokeAll {
    #[schema(schema_with = rules::all_schema)]
    all: bool,
    #[schema(schema_with = rules::confirm_schema)]
    confirm: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeOutcome {
    /// How many tokens were revoked.
    pub revoked: u64,
    /// Ids that were revoked (or replaced and past their grace) already.
    pub already_revoked: Vec<String>,
    /// Ids that name no token.
    pub unknown: Vec<String>,
}

/// Revokes the tokens named by id, or, with `all` and the typed confirmation, every
/// token that works. Audited; every replica refuses them within a second.
#[utoipa::path(post, path = "/patgate/api/v1/token-inventory/revoke", tag = "admin",
    operation_id = "token_inventory_revoke", request_body = RevokeRequest,
    security(("password" = []), ("session" = [])),
    responses((status = 200, body = RevokeOutcome),
        (status = 400, description = "`invalid_selection`: neither `ids` nor `all`, both, \
            or more than 1000 ids"),
        (status = 422, description = "`confirmation_required`: `all` without `confirm` \
            set to `revoke every token`")))]
pub async fn revoke(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<RevokeSelection>,
) -> Result<Json<RevokeOutcome>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let selection = |message: &str| ApiError::bad_request("invalid_selection", message);
    match (body.ids, body.all) {
        (Some(_), Some(_)) => Err(selection("give either ids or all, not both")),
        (Some(_), None) if body.confirm.is_some() => {
            Err(selection("confirm goes with all; ids need no confirmation"))
        }
        (None, None) => Err(selection(
            "give ids (the tokens to revoke) or all with confirm",
        )),
        (None, Some(false)) => Err(selection(
            "all takes true only; to revoke some tokens, give their ids",
        )),
        (None, Some(true)) => {
            if body.confirm.as_deref() != Some(rules::REVOKE_ALL_CONFIRMATION) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "confirmation_required",
                    format!(
                        "revoking every token needs confirm set to exactly {:?}",
                        rules::REVOKE_ALL_CONFIRMATION
                    ),
                ));
            }
            let revoked = api.store.revoke_every_token().await?;
            tracing::warn!(by = %caller.username, revoked, "every token was revoked");
            api.audit_change(
                &caller,
                "token.revoked_all",
                serde_json::json!({ "revoked": revoked }),
            )
            .await;
            Ok(Json(RevokeOutcome {
                revoked,
                already_revoked: Vec::new(),
                unknown: Vec::new(),
            }))
        }
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > rules::REVOKE_IDS_MAX {
                return Err(selection(&format!(
                    "{} ids: give from 1 to {}",
                    ids.len(),
                    rules::REVOKE_IDS_MAX
                )));
            }
            let mut unique = ids;
            unique.sort();
            unique.dedup();
            let outcome = api.store.revoke_tokens(&unique).await?;
            for token in &outcome.revoked {
                api.audit(AuditEvent {
                    actor: Some(caller.username.clone()),
                    action: "token.deleted",
                    username: Some(token.username.clone()),
                    token_id: Some(token.id.clone()),
                    ip: Some(caller.ip.to_string()),
                    detail: Some(serde_json::json!({"name": token.name, "via": "inventory"})),
                })
                .await;
            }
            Ok(Json(RevokeOutcome {
                revoked: outcome.revoked.len() as u64,
                already_revoked: outcome.already,
                unknown: outcome.unknown,
            }))
        }
    }
}

/// The CSV export's columns, in order.
const CSV_COLUMNS: [&str; 15] = [
    "id",
    "name",
    "owner",
    "owner_source",
    "state",
    "scope",
    "made_by",
    "created_at",
    "expires_at",
    "last_used_at",
    "last_used_ip",
    "revoked_at",
    "allowed_addresses",
    "rotated_from",
    "replaced_by",
];

/// `tokens` as CSV (RFC 4180, CRLF line ends), with a header row.
fn render_csv(tokens: impl Iterator<Item = InventoryToken>) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    for t in tokens {
        let row = [
            t.id.clone(),
            t.name.clone(),
            t.owner.clone(),
            t.owner_source.clone(),
            t.state.as_str().to_string(),
            t.scope.as_str().to_string(),
            t.made_by.map_or("unknown", MadeBy::as_str).to_string(),
            t.created_at.clone(),
            text(&t.expires_at),
            text(&t.last_used_at),
            text(&t.last_used_ip),
            text(&t.revoked_at),
            t.allowed_addresses.join(" "),
            text(&t.rotated_from),
            text(&t.replaced_by),
        ];
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV cell. A value a spreadsheet would read as a formula (first character `=`,
/// `+`, `-`, `@`, tab or carriage return) is written after an apostrophe, so that a
/// token named `=HYPERLINK(…)` stays text; a value with a comma, a quote or a line
/// break is quoted.
fn csv_cell(value: &str) -> String {
    let mut cell = String::with_capacity(value.len() + 2);
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(value);
    if cell.contains([',', '"', '\r', '\n']) || cell.trim() != cell {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_cannot_become_formulas() {
        assert_eq!(csv_cell("deploy-ci"), "deploy-ci");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell(""), "");
    }
}
