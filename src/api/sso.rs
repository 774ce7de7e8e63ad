//! The SSO routes: `GET /patgate/sso/login` sends the browser to the provider and
//! `GET /patgate/sso/callback` takes it back ([`crate::signin::oidc`] does the
//! protocol). Every failure is a readable page, not a 500, and is counted for the audit
//! log per address and reason, never written as the caller sent it.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::ApiRef;
use crate::core::client::ClientInfo;
use crate::core::text::escape_html;
use crate::signin::oidc::{clear_binding_cookie, Failure, AFTER_SIGN_IN};

/// Starts an SSO sign-in: redirects the browser to the OpenID provider (authorization
/// code flow with PKCE), setting a cookie that binds the sign-in to this browser. A
/// sign-in that cannot start is an HTML page with the reason.
#[utoipa::path(get, path = "/patgate/sso/login", tag = "sso", operation_id = "sso_login",
    security(()),
    responses(
        (status = 303, description = "to the provider",
            headers(("Location" = String, description = "the provider's authorization endpoint"),
                ("Set-Cookie" = String, description = "the sign-in's binding cookie"))),
        (status = 404, description = "`sso_off`: SSO is not configured", content_type = "text/html", body = String),
        (status = 429, description = "too many SSO sign-ins started from this address", content_type = "text/html", body = String),
        (status = 500, description = "`provider_unusable`: sso.issuer or sso.redirect_url is not a URL", content_type = "text/html", body = String),
        (status = 502, description = "`provider_unusable`: the provider's discovery failed", content_type = "text/html", body = String),
        (status = 503, description = "the gateway is stopping, or its database could not be reached", content_type = "text/html", body = String)))]
pub async fn login(
    State(api): State<ApiRef>,
    Extension(client): Extension<ClientInfo>,
) -> Response {
    let started = match api.get() {
        Ok(api) => api.signin.start_sso(&api.store, &client).await,
        Err(e) => Err(Failure::new(e.status, "unavailable", e.message)),
    };
    match started {
        Ok(started) => redirect(started.location, &[started.binding_cookie]),
        Err(failure) => page(failure, &[]),
    }
}

/// Where the provider sends the browser back: the code is exchanged, the ID token
/// checked, the user signed in with a session cookie and sent to the pages. Whatever
/// happens, the binding cookie has served; a failure is an HTML page with the reason.
#[utoipa::path(get, path = "/patgate/sso/callback", tag = "sso", operation_id = "sso_callback",
    security(()),
    params(
        ("code" = Option<String>, Query, description = "the authorization code"),
        ("state" = Option<String>, Query, description = "the state the sign-in started with"),
        ("error" = Option<String>, Query, description = "the provider's error, instead of a code"),
        ("error_description" = Option<String>, Query, description = "the provider's words about it")),
    responses(
        (status = 303, description = "signed in: to the pages",
            headers(("Location" = String), ("Set-Cookie" = String, description = "the session cookie"))),
        (status = 400, description = "no code or state, or the provider's own error", content_type = "text/html", body = String),
        (status = 401, description = "the sign-in was not started in this browser, or the code or ID token was refused", content_type = "text/html", body = String),
        (status = 403, description = "the user may not sign in with SSO (disabled, or a name an internal or LDAP user holds)", content_type = "text/html", body = String),
        (status = 404, description = "`sso_off`: SSO is not configured, or no such sign-in", content_type = "text/html", body = String),
        (status = 500, description = "`provider_unusable`: sso.issuer or sso.redirect_url is not a URL", content_type = "text/html", body = String),
        (status = 502, description = "the provider could not be used", content_type = "text/html", body = String),
        (status = 503, description = "the gateway is stopping, or its database could not be reached", content_type = "text/html", body = String)))]
pub async fn callback(
    State(api): State<ApiRef>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let done = clear_binding_cookie(client.https);
    let api = match api.get() {
        Ok(api) => api,
        Err(e) => return page(Failure::new(e.status, "unavailable", e.message), &[done]),
    };
    match api
        .signin
        .finish_sso(&api.store, &headers, &client, &params)
        .await
    {
        Ok(cookie) => redirect(HeaderValue::from_static(AFTER_SIGN_IN), &[cookie, done]),
        Err(failure) => {
            api.signin.sso_failed(&client, &failure);
            page(failure, &[done])
        }
    }
}

/// 303 to `location`, setting `cookies`; never stored.
fn redirect(location: HeaderValue, cookies: &[HeaderValue]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    for cookie in cookies {
        headers.append(http::header::SET_COOKIE, cookie.clone());
    }
    headers.insert(http::header::LOCATION, location);
    no_store(headers);
    response
}

/// A sign-in that cannot go on, as a page for the person.
fn page(failure: Failure, cookies: &[HeaderValue]) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign-in failed</title></head><body><h1>Sign-in with SSO failed</h1>\
         <p>{}</p><p><a href=\"/patgate/sso/login\">Try again</a> or \
         <a href=\"/patgate/signin\">sign in with a password</a></p></body></html>",
        escape_html(&failure.message)
    );
    let mut response = (failure.status, Html(page)).into_response();
    let headers = response.headers_mut();
    for cookie in cookies {
        headers.append(http::header::SET_COOKIE, cookie.clone());
    }
    no_store(headers);
    response
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
}
