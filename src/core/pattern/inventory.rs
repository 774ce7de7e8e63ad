//! The rules of the administrators' inventory and of the limit of tokens per user,
//! beside the schemas built from them.

use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use super::integer_schema;

/// Where a token's owner comes from, as the inventory's `source` says it: a service
/// account, or a person's user source.
pub const OWNER_SOURCES: [&str; 4] = ["internal", "ldap", "sso", "service_account"];
/// The `state` filter's choices.
pub const STATES: [&str; 4] = ["active", "expiring", "expired", "revoked"];
/// The `made_by` filter's choices; `unknown`: made before the gateway kept it.
pub const MADE_BY: [&str; 5] = ["page", "cli", "api", "exchange", "unknown"];
/// The `sort` choices; a leading `-` sorts descending.
pub const SORTS: [&str; 5] = ["created_at", "expires_at", "last_used_at", "owner", "name"];
/// Days the day filters accept, at most (ten years).
pub const DAYS_MAX: i64 = 3650;
/// Days `state=expiring` looks ahead when `expires_within_days` does not say.
pub const EXPIRING_DAYS_DEFAULT: i64 = 7;
/// Most rows one CSV export holds.
pub const CSV_ROWS_MAX: i64 = 100_000;
/// Most ids one bulk revocation takes.
pub const REVOKE_IDS_MAX: usize = 1000;
/// What the emergency revocation of every token must be sent with.
pub const REVOKE_ALL_CONFIRMATION: &str = "revoke every token";
/// Largest `max_tokens_per_user`.
pub const MAX_TOKENS_PER_USER: i64 = 10_000;

/// Why a `max_tokens_per_user` is refused, or `None`.
pub fn max_tokens_problem(max: i64) -> Option<String> {
    (!(1..=MAX_TOKENS_PER_USER).contains(&max))
        .then(|| format!("{max}: between 1 and {MAX_TOKENS_PER_USER}, or null for no limit"))
}

/// One of `values`, or nothing.
pub fn choice_schema(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            values
                .iter()
                .map(|v| serde_json::json!(v))
                .chain([serde_json::Value::Null]),
        ))
        .description(Some(description))
        .build()
}

pub fn state_schema() -> Object {
    choice_schema(
        &STATES,
        "`active` (works), `expiring` (active, expiring within `expires_within_days`, 7 by \
         default), `expired`, `revoked` (revoked, or replaced by rotation and past its grace).",
    )
}

pub fn source_schema() -> Object {
    choice_schema(
        &OWNER_SOURCES,
        "Where the owner comes from: a service account, or a person's user source.",
    )
}

pub fn made_by_schema() -> Object {
    choice_schema(
        &MADE_BY,
        "How the token was made: on the pages, with the command line, through the API \
         with a password, by a token exchange; `unknown` for tokens made before this was kept.",
    )
}

pub fn sort_schema() -> Object {
    let values: Vec<String> = SORTS
        .iter()
        .flat_map(|s| [s.to_string(), format!("-{s}")])
        .collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    choice_schema(
        &values,
        "The column to sort by, descending with a leading `-`; `-created_at` (newest \
         first) by default.",
    )
}

pub fn scope_schema() -> Object {
    choice_schema(&["full", "read", "webhook"], "The tokens' scope.")
}

/// `true`, the only value `all` takes.
pub fn all_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Boolean))
        .enum_values(Some([serde_json::json!(true)]))
        .description(Some(
            "Every token that works, of every user and service account.",
        ))
        .build()
}

/// The typed confirmation of [`all_schema`].
pub fn confirm_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some([serde_json::json!(REVOKE_ALL_CONFIRMATION)]))
        .description(Some(
            "Exactly `revoke every token`; anything else is 422 `confirmation_required`.",
        ))
        .build()
}

pub fn days_schema() -> Object {
    integer_schema(0, DAYS_MAX, true, "Days, 0 to 3650.")
}

pub fn max_tokens_schema() -> Object {
    integer_schema(
        1,
        MAX_TOKENS_PER_USER,
        true,
        "At most this many active tokens per user (tokens from a token exchange not \
         counted; rotation is not blocked); `null`: no limit (the default). Reaching it \
         is 409 `token_limit_reached` on creation.",
    )
}

pub fn format_schema() -> Object {
    choice_schema(
        &["json", "csv"],
        "`csv`: every matching token (at most 100,000; `page` and `per_page` are ignored) \
         as text/csv; `json` by default.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_of_tokens_is_checked() {
        assert_eq!(max_tokens_problem(5), None);
        assert!(max_tokens_problem(0).is_some());
        assert!(max_tokens_problem(MAX_TOKENS_PER_USER + 1).is_some());
    }
}
