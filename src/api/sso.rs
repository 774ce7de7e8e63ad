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

/// `GET /patgate/sso/login`: off to the provider.
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

/// `GET /patgate/sso/callback`: the provider sends the browser back here. Whatever
/// happens, the binding cookie has served.
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
