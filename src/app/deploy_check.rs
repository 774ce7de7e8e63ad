//! `patgate check-deploy`: asks Deploy, with the identity the gateway would assert for a
//! user, whether it accepts it and as whom, whether it counts them an administrator, and
//! which roles and permissions it applies to them, and says so in plain words.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request};

use crate::config::{Config, IdentityMode};
use crate::core::sealed::Sealer;
use crate::core::token::TokenHasher;
use crate::identity::jwt::JwtMinter;
use crate::identity::UpstreamIdentity;
use crate::signin::deploy::{admin_answer, ADMIN_ANSWER_TYPE};
use crate::signin::http_client::{HttpClient, HttpError};
use crate::store::Store;

use super::deploy_lists::{self, Group};

/// Deploy's RoleService: "Lists the roles of the currently logged in user".
pub const ROLES_PATH: &str = "/deployit/security/role/roles";
/// Deploy's PermissionService: "Gets all the permissions granted to the logged in user".
pub const PERMISSIONS_PATH: &str = "/deployit/security/granted-permissions";
/// Lists are asked for in JSON first; a Deploy that answers XML anyway is read too.
const LISTS_TYPE: &str = "application/json";

/// `(accepted, message)`; `Err` only when the check itself could not be set up.
pub async fn check(
    config: &Config,
    store: &Store,
    hasher: &TokenHasher,
    username: &str,
) -> anyhow::Result<(bool, String)> {
    let settings = &config.upstream.identity;
    let jwt = match settings.mode {
        IdentityMode::Jwt => Some(
            JwtMinter::start(
                &settings.jwt,
                store.clone(),
                Arc::new(Sealer::new(hasher.raw_keys())),
            )
            .await?,
        ),
        _ => None,
    };
    let identity = UpstreamIdentity::new(settings, jwt)?;
    let roles = store.user_roles(username).await?;
    let mut headers = HeaderMap::new();
    identity
        .apply(&mut headers, &Arc::from(username), &roles)
        .await?;
    let client = HttpClient::new(
        config.upstream.ca_file.as_deref(),
        config.upstream.connect_timeout + Duration::from_secs(10),
    )?;
    let base = config.upstream.url.to_string();
    let base = base.trim_end_matches('/');
    let ask = |path: &str, accept: &'static str| {
        let mut request = Request::get(format!("{base}{path}"))
            .body(Vec::new())
            .expect("a valid request");
        request.headers_mut().extend(headers.clone());
        request
            .headers_mut()
            .insert(http::header::ACCEPT, http::HeaderValue::from_static(accept));
        client.send(request)
    };
    let info_path = &config.signin.deploy_check_path;
    let info = match ask(info_path, ADMIN_ANSWER_TYPE).await {
        Ok(answer) => answer,
        Err(e) => {
            return Ok((
                false,
                format!("Deploy at {base} could not be reached: {e}. Check upstream.url and that Deploy is running."),
            ))
        }
    };
    if !info.status().is_success() {
        let hint = match settings.mode {
            IdentityMode::Jwt => format!(
                "Check deploy-oidc.yaml: access-token issuer {:?}, audience {:?}, jwsAlg {}, keyRetrievalUri pointing at this gateway's /patgate/.well-known/jwks.json, and userNameClaimName {:?} (see deploy/README.md).",
                settings.jwt.issuer,
                settings.jwt.audience,
                settings.jwt.algorithm.as_str(),
                settings.jwt.username_claim
            ),
            IdentityMode::Header => format!(
                "Deploy must trust the {} header from the gateway (see deploy/README.md).",
                settings.header
            ),
            IdentityMode::Basic => "Check upstream.identity.basic: Deploy refused the service account.".to_string(),
        };
        return Ok((
            false,
            format!(
                "Deploy refused the gateway's identity for {username}: HTTP {} from {info_path}. {hint}",
                info.status().as_u16()
            ),
        ));
    }
    let admin = match &config.signin.deploy_admin_path {
        Some(path) => match ask(path, ADMIN_ANSWER_TYPE).await {
            Ok(answer) if answer.status().is_success() => {
                if admin_answer(answer.body()) {
                    " Deploy treats them as an administrator."
                } else {
                    " Deploy does not treat them as an administrator."
                }
            }
            _ => " Deploy's admin check did not answer.",
        },
        None => "",
    };
    let (seen_as, who) = match (&settings.mode, &settings.basic) {
        (IdentityMode::Basic, Some(account)) => (
            format!("as the service account (every token acts with the service account's permissions, not {username}'s)"),
            format!("the service account {}", account.username),
        ),
        _ => (format!("as {username}"), username.to_string()),
    };
    let roles = roles_line(
        listing(ask(ROLES_PATH, LISTS_TYPE).await, ROLES_PATH),
        &who,
        || {
            match (settings.mode, jwt_roles(&headers, &settings.jwt.roles_claim)) {
            (IdentityMode::Jwt, Some(carried)) if !carried.is_empty() => format!(
                "the JWT carries {}; create Deploy roles of those names (deploy/README.md, step 4)",
                carried.join(", ")
            ),
            (IdentityMode::Jwt, _) => format!(
                "the JWT carries none; give {username} roles with upstream.identity.jwt.default_roles or user_roles, or SSO groups"
            ),
            _ => format!("give {who} roles in Deploy"),
        }
        },
    );
    let permissions = permissions_line(
        listing(ask(PERMISSIONS_PATH, LISTS_TYPE).await, PERMISSIONS_PATH),
        &who,
    );
    Ok((
        true,
        format!(
            "Deploy accepted the gateway's identity {seen_as}: HTTP {} from {info_path}.{admin}\n{roles}\n{permissions}",
            info.status().as_u16()
        ),
    ))
}

/// What Deploy said of `who`'s roles; `no_roles` says what to do when it named none.
fn roles_line(
    listed: Result<Vec<Group>, String>,
    who: &str,
    no_roles: impl FnOnce() -> String,
) -> String {
    match listed.map(|groups| deploy_lists::names(&groups)) {
        Ok(names) if names.is_empty() => format!("Deploy says {who} has no roles: {}.", no_roles()),
        Ok(names) => format!("Deploy says {who} has the roles: {}.", names.join(", ")),
        Err(why) => format!("Deploy did not say which roles {who} has: {why}."),
    }
}

/// What Deploy said of `who`'s granted permissions.
fn permissions_line(listed: Result<Vec<Group>, String>, who: &str) -> String {
    match listed {
        Ok(groups) if groups.iter().all(|g| g.names.is_empty()) => {
            format!("Deploy says {who} has no granted permissions.")
        }
        Ok(groups) => format!(
            "Deploy says {who} has the granted permissions: {}.",
            permission_words(&groups)
        ),
        Err(why) => format!("Deploy did not say which permissions {who} has: {why}."),
    }
}

/// A list Deploy answered, or why there is none, in words for the operator (never the
/// body, which is Deploy's to show).
fn listing(
    answer: Result<http::Response<Vec<u8>>, HttpError>,
    path: &str,
) -> Result<Vec<Group>, String> {
    let answer = answer.map_err(|e| format!("{path} did not answer ({e})"))?;
    let status = answer.status();
    match status.as_u16() {
        200..=299 => {}
        404 => {
            return Err(format!(
                "HTTP 404 from {path}: this Deploy does not have it"
            ))
        }
        401 | 403 => {
            return Err(format!(
                "HTTP {} from {path}: Deploy does not let this identity ask",
                status.as_u16()
            ))
        }
        other => return Err(format!("HTTP {other} from {path}")),
    }
    deploy_lists::read(answer.body()).ok_or_else(|| {
        let kind = answer
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type");
        format!(
            "the answer from {path} ({kind}, {} bytes) is neither a JSON nor an XML list",
            answer.body().len()
        )
    })
}

/// The roles claim of the JWT in `headers` (jwt mode), as the gateway minted it.
fn jwt_roles(headers: &HeaderMap, claim: &str) -> Option<Vec<String>> {
    use base64::Engine;
    let bearer = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let payload = bearer.strip_prefix("Bearer ")?.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let roles = match &claims[claim] {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        serde_json::Value::String(role) => vec![role.clone()],
        _ => Vec::new(),
    };
    Some(roles)
}

/// `login, report#view; on Applications/App1: read, deploy#initial`: global ones first.
fn permission_words(groups: &[Group]) -> String {
    let mut ordered: Vec<&Group> = groups.iter().filter(|g| !g.names.is_empty()).collect();
    ordered.sort_by_key(|g| g.scope.is_some());
    ordered
        .iter()
        .map(|g| match &g.scope {
            None => g.names.join(", "),
            Some(scope) => format!("on {scope}: {}", g.names.join(", ")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
