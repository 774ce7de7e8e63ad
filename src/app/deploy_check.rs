//! `patgate check-deploy`: asks Deploy, with the identity the gateway would assert for a
//! user, whether it accepts it and as whom, and says so in plain words.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request};

use crate::config::{Config, IdentityMode};
use crate::core::sealed::Sealer;
use crate::core::token::TokenHasher;
use crate::identity::jwt::JwtMinter;
use crate::identity::UpstreamIdentity;
use crate::signin::deploy::{admin_answer, ADMIN_ANSWER_TYPE};
use crate::signin::http_client::HttpClient;
use crate::store::Store;

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
    let ask = |path: &str| {
        let mut request = Request::get(format!("{base}{path}"))
            .body(Vec::new())
            .expect("a valid request");
        request.headers_mut().extend(headers.clone());
        request.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static(ADMIN_ANSWER_TYPE),
        );
        client.send(request)
    };
    let info_path = &config.signin.deploy_check_path;
    let info = match ask(info_path).await {
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
        Some(path) => match ask(path).await {
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
    let seen_as = match settings.mode {
        IdentityMode::Basic => format!(
            "as the service account (every token acts with the service account's permissions, not {username}'s)"
        ),
        _ => format!("as {username}"),
    };
    Ok((
        true,
        format!(
            "Deploy accepted the gateway's identity {seen_as}: HTTP {} from {info_path}.{admin}",
            info.status().as_u16()
        ),
    ))
}
