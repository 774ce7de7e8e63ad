//! SCIM requests as an identity provider sends them, with the secret the tests configure.

use bytes::Bytes;
use serde_json::{json, Value};

use super::oidc::request;
use super::Answer;

pub const SECRET: &str = "scim-test-secret-0123456789abcdef0123";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM request to `base` + `/patgate/scim/v2` + `path` with the given Authorization.
pub async fn scim_as(
    authorization: Option<&str>,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut headers = vec![("content-type", "application/scim+json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    request(
        method,
        &format!("{base}/patgate/scim/v2{path}"),
        &headers,
        bytes,
    )
    .await
}

/// A SCIM request with the configured secret.
pub async fn scim(base: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let bearer = format!("Bearer {SECRET}");
    scim_as(Some(&bearer), base, method, path, body).await
}

/// What Okta sends to provision a user.
pub fn okta_user(username: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": username,
        "externalId": format!("00u-{username}"),
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"primary": true, "value": format!("{username}@example.com"), "type": "work"}],
        "active": true,
    })
}
