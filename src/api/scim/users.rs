//! `/Users`: list (with `filter=userName eq "…"`), get, create, replace, patch and
//! delete. A User here is one the identity provider manages: its `userName` (fixed once
//! created), `externalId`, one e-mail address and `active`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{filter, scim_json, Provisioner, ScimBody, ScimError, BASE, MAX_RESULTS};
use crate::accounts::access;
use crate::core::time::rfc3339;
use crate::store::{ScimUser, ScimUserQuery};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// What the audit log names as the channel of a change.
const VIA: &str = "scim";
/// The actor of SCIM changes in the audit log.
const ACTOR: &str = "scim";

/// Attributes every answer carries whatever `attributes` asks (RFC 7643 `returned: always`).
const ALWAYS: [&str; 2] = ["schemas", "id"];

/// What a User is, as SCIM writes it, with the Groups it is in (`(id, displayName)`).
fn resource(user: &ScimUser, groups: &[(String, String)], origin: &str) -> Value {
    let mut out = json!({
        "schemas": [USER_SCHEMA],
        "id": user.id,
        "userName": user.username,
        "active": !user.disabled,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(user.created_at),
            "lastModified": rfc3339(user.updated_at),
            "location": format!("{origin}{BASE}/Users/{}", user.id),
        },
    });
    if let Some(external_id) = &user.external_id {
        out["externalId"] = external_id.as_str().into();
    }
    if let Some(email) = &user.email {
        out["emails"] = json!([{ "value": email }]);
    }
    if !groups.is_empty() {
        out["groups"] = groups
            .iter()
            .map(|(id, name)| {
                json!({
                    "value": id,
                    "display": name,
                    "type": "direct",
                    "$ref": format!("{origin}{BASE}/Groups/{id}"),
                })
            })
            .collect();
    }
    out
}

/// A User's answer, with its groups read from the store.
async fn answer(caller: &Provisioner, user: &ScimUser) -> Result<Value, ScimError> {
    let groups = caller
        .api
        .store
        .groups_of(&[user.username.as_str()])
        .await?
        .remove(&user.username)
        .unwrap_or_default();
    Ok(resource(user, &groups, &caller.origin))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub(super) filter: Option<String>,
    pub(super) start_index: Option<i64>,
    pub(super) count: Option<i64>,
    pub(super) attributes: Option<String>,
    pub(super) excluded_attributes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneQuery {
    pub(super) attributes: Option<String>,
    pub(super) excluded_attributes: Option<String>,
}

pub(super) fn query<T>(parsed: Result<Query<T>, QueryRejection>) -> Result<T, ScimError> {
    parsed
        .map(|q| q.0)
        .map_err(|e| ScimError::bad("invalidValue", e.body_text()))
}

/// Keeps the top-level attributes `attributes` names, or drops those
/// `excludedAttributes` names (RFC 7644 §3.4.2.5); names in any case, sub-attributes
/// counted as their parent.
fn project(resource: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    project_as(resource, USER_SCHEMA, attributes, excluded)
}

/// [`project`] for a resource of any schema.
pub(super) fn project_as(
    mut resource: Value,
    schema: &str,
    attributes: Option<&str>,
    excluded: Option<&str>,
) -> Value {
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|a| {
                let a = a.trim();
                let a = a
                    .strip_prefix(schema)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .unwrap_or(a);
                a.split('.').next().unwrap_or_default().to_ascii_lowercase()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let Some(object) = resource.as_object_mut() else {
        return resource;
    };
    if let Some(wanted) = attributes.map(names).filter(|w| !w.is_empty()) {
        object.retain(|key, _| {
            ALWAYS.contains(&key.as_str()) || wanted.contains(&key.to_ascii_lowercase())
        });
    } else if let Some(unwanted) = excluded.map(names) {
        object.retain(|key, _| {
            ALWAYS.contains(&key.as_str()) || !unwanted.contains(&key.to_ascii_lowercase())
        });
    }
    resource
}

/// `GET /Users`: a page of users, or the one a `userName eq` filter names.
pub async fn list(
    caller: Provisioner,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ScimError> {
    let params = query(params)?;
    let username = params
        .filter
        .as_deref()
        .map(filter::username_eq)
        .transpose()?;
    let start_index = params.start_index.unwrap_or(1).max(1);
    let count = params.count.unwrap_or(100).clamp(0, MAX_RESULTS);
    let (users, total) = caller
        .api
        .store
        .scim_users(ScimUserQuery {
            username: username.as_deref(),
            offset: start_index - 1,
            limit: count,
        })
        .await?;
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let groups = caller.api.store.groups_of(&names).await?;
    let resources: Vec<Value> = users
        .iter()
        .map(|u| {
            project(
                resource(
                    u,
                    groups.get(&u.username).map_or(&[][..], Vec::as_slice),
                    &caller.origin,
                ),
                params.attributes.as_deref(),
                params.excluded_attributes.as_deref(),
            )
        })
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    ))
}

async fn existing(caller: &Provisioner, id: &str) -> Result<ScimUser, ScimError> {
    caller
        .api
        .store
        .scim_user(id)
        .await?
        .ok_or_else(|| ScimError::no_user(id))
}

/// `GET /Users/{id}`.
pub async fn one(
    caller: Provisioner,
    Path(id): Path<String>,
    params: Result<Query<OneQuery>, QueryRejection>,
) -> Result<Response, ScimError> {
    let params = query(params)?;
    let user = existing(&caller, &id).await?;
    Ok(scim_json(
        StatusCode::OK,
        &project(
            answer(&caller, &user).await?,
            params.attributes.as_deref(),
            params.excluded_attributes.as_deref(),
        ),
    ))
}

/// What a request may set on a User, read and checked before anything is written.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    username: String,
    external_id: Option<String>,
    email: Option<String>,
    active: bool,
}

impl Wanted {
    fn from(user: &ScimUser) -> Wanted {
        Wanted {
            username: user.username.clone(),
            external_id: user.external_id.clone(),
            email: user.email.clone(),
            active: !user.disabled,
        }
    }
}

/// An attribute name as written in a body or a path: any case, optionally with the
/// User schema's URN in front.
fn attribute_name(key: &str) -> String {
    let key = if key.len() > USER_SCHEMA.len() + 1
        && key[..USER_SCHEMA.len()].eq_ignore_ascii_case(USER_SCHEMA)
        && key.as_bytes()[USER_SCHEMA.len()] == b':'
    {
        &key[USER_SCHEMA.len() + 1..]
    } else {
        key
    };
    key.to_ascii_lowercase()
}

fn username(value: &Value) -> Result<String, ScimError> {
    let Some(name) = value.as_str() else {
        return Err(ScimError::bad("invalidValue", "userName must be a string"));
    };
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ScimError::bad(
            "invalidValue",
            "userName must be 1 to 255 characters",
        ));
    }
    if name.trim() != name
        || name.chars().any(char::is_control)
        || crate::core::text::has_format_chars(name)
    {
        return Err(ScimError::bad(
            "invalidValue",
            "userName may not start or end with spaces or hold control or invisible formatting characters (right-to-left overrides, zero-width spaces)",
        ));
    }
    Ok(name.to_string())
}

pub(super) fn external_id(value: &Value) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= 255 && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        _ => Err(ScimError::bad(
            "invalidValue",
            "externalId must be a string of at most 255 characters",
        )),
    }
}

fn active(value: &Value) -> Result<bool, ScimError> {
    // Azure AD writes booleans in PATCH values as strings ("False").
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            "active must be true or false",
        )),
    }
}

fn email_text(value: &Value) -> Result<String, ScimError> {
    let email = value
        .as_str()
        .ok_or_else(|| ScimError::bad("invalidValue", "an e-mail value must be a string"))?;
    let valid = email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !valid {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{email:?} is not an e-mail address"),
        ));
    }
    Ok(email.to_string())
}

/// The address kept from `emails`: the primary one, else the first; `null` or `[]`:
/// none.
fn emails(value: &Value) -> Result<Option<String>, ScimError> {
    let list = match value {
        Value::Null => return Ok(None),
        Value::Array(list) => list.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "emails must be a list of {\"value\": …} objects",
            ))
        }
    };
    let mut chosen = None;
    for item in list {
        let Some(value) = item.get("value") else {
            return Err(ScimError::bad(
                "invalidValue",
                "each of emails needs a value",
            ));
        };
        let email = email_text(value)?;
        let primary = item.get("primary").is_some_and(|p| p == &Value::Bool(true));
        if primary || chosen.is_none() {
            chosen = Some((email, primary));
        }
        if primary {
            break;
        }
    }
    Ok(chosen.map(|(email, _)| email))
}

/// Applies one attribute of a body (create, replace, or a PATCH value without a path)
/// to `wanted`. Attributes this server does not keep (name, displayName, …, which
/// providers send along) are ignored.
fn set_attribute(
    wanted: &mut Wanted,
    key: &str,
    value: &Value,
    fixed_username: bool,
) -> Result<(), ScimError> {
    match attribute_name(key).as_str() {
        "username" => {
            let name = username(value)?;
            if fixed_username && name != wanted.username {
                return Err(ScimError::bad(
                    "mutability",
                    format!(
                        "userName cannot change (from {:?} to {name:?}): tokens and Deploy's audit trail belong to the name; create a new User instead",
                        wanted.username
                    ),
                ));
            }
            wanted.username = name;
        }
        "externalid" => wanted.external_id = external_id(value)?,
        "active" => wanted.active = active(value)?,
        "emails" => wanted.email = emails(value)?,
        _ => {}
    }
    Ok(())
}

/// Reads a full User (create or replace) over `wanted`: `externalId` and `emails` left
/// out are cleared; `active` left out stays as it is (a new User is active).
fn read_user(
    body: &Map<String, Value>,
    mut wanted: Wanted,
    fixed: bool,
) -> Result<Wanted, ScimError> {
    if !body.keys().any(|k| attribute_name(k) == "username") {
        return Err(ScimError::bad("invalidValue", "userName is required"));
    }
    wanted.external_id = None;
    wanted.email = None;
    for (key, value) in body {
        set_attribute(&mut wanted, key, value, fixed)?;
    }
    Ok(wanted)
}

/// Writes what changed, disabling or enabling through the admin API's own path.
async fn store(
    caller: &Provisioner,
    user: &ScimUser,
    wanted: &Wanted,
) -> Result<ScimUser, ScimError> {
    let store = &caller.api.store;
    if wanted.external_id != user.external_id || wanted.email != user.email {
        store
            .scim_update(
                &user.id,
                wanted.external_id.as_deref(),
                wanted.email.as_deref(),
            )
            .await?;
    }
    if wanted.active == user.disabled {
        access::change_access(
            &caller.api.store,
            &user.username,
            !wanted.active,
            Some(ACTOR.into()),
            caller.ip.clone(),
            Some(VIA),
        )
        .await?;
    }
    existing(caller, &user.id).await
}

/// `POST /Users`: provisions a user. A user the gateway knows already (who signed in
/// before being provisioned) is taken over with their tokens; one that another User
/// resource holds is a `uniqueness` conflict.
pub async fn create(caller: Provisioner, ScimBody(body): ScimBody) -> Result<Response, ScimError> {
    let blank = Wanted {
        username: String::new(),
        external_id: None,
        email: None,
        active: true,
    };
    let wanted = read_user(&body, blank, false)?;
    let Some(linked) = caller
        .api
        .store
        .scim_link(
            &wanted.username,
            wanted.external_id.as_deref(),
            wanted.email.as_deref(),
        )
        .await?
    else {
        let message = match caller.api.store.user(&wanted.username).await? {
            Some(user) if user.username != wanted.username => format!(
                "userName {:?} is user {:?} in another case or form; one person is one user: provision {:?}",
                wanted.username, user.username, user.username
            ),
            _ => format!("a User with userName {:?} exists already", wanted.username),
        };
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            message,
        ));
    };
    caller
        .api
        .audit(crate::store::AuditEvent {
            actor: Some(ACTOR.into()),
            action: "user.provisioned",
            username: Some(linked.username.clone()),
            ip: Some(caller.ip.clone()),
            detail: Some(json!({ "via": VIA, "scim_id": linked.id })),
            ..Default::default()
        })
        .await;
    // `active` left out means active, for a taken-over (perhaps disabled) user too.
    let user = store(&caller, &linked, &wanted).await?;
    let mut response = scim_json(StatusCode::CREATED, &answer(&caller, &user).await?);
    if let Ok(location) =
        http::HeaderValue::from_str(&format!("{}{BASE}/Users/{}", caller.origin, user.id))
    {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Ok(response)
}

/// `PUT /Users/{id}`: replaces the User; `userName` must stay the same.
pub async fn replace(
    caller: Provisioner,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let user = existing(&caller, &id).await?;
    let wanted = read_user(&body, Wanted::from(&user), true)?;
    let user = store(&caller, &user, &wanted).await?;
    Ok(scim_json(StatusCode::OK, &answer(&caller, &user).await?))
}

/// The attribute a PATCH path names (`active`, `emails[type eq "work"].value`,
/// `urn:…:User:externalId`), and whether it goes below the attribute.
fn path_attribute(path: &str) -> (String, bool) {
    let name = attribute_name(path.trim());
    match name.find(['[', '.']) {
        Some(at) => (name[..at].to_string(), true),
        None => (name, false),
    }
}

/// `PATCH /Users/{id}` (RFC 7644 §3.5.2): `add`, `replace` and `remove` of `active`,
/// `externalId` and `emails`, with or without a path, as Okta and Azure AD send them.
/// Every operation is checked before anything is written.
pub async fn patch(
    caller: Provisioner,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let operations = super::patch_operations(&body)?;
    let user = existing(&caller, &id).await?;
    let mut wanted = Wanted::from(&user);
    for operation in operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let path = operation.get("path").and_then(Value::as_str);
        let value = operation.get("value");
        match (op.as_str(), path, value) {
            ("add" | "replace", None, Some(Value::Object(values))) => {
                for (key, value) in values {
                    set_attribute(&mut wanted, key, value, true)?;
                }
            }
            ("add" | "replace", Some(path), Some(value)) => {
                let (name, deeper) = path_attribute(path);
                match (name.as_str(), deeper) {
                    // emails[type eq "work"].value = "…" (Azure AD): the address itself.
                    ("emails", true) => wanted.email = Some(email_text(value)?),
                    (_, true) => {}
                    (name, false) => set_attribute(&mut wanted, name, value, true)?,
                }
            }
            ("remove", Some(path), _) => match path_attribute(path).0.as_str() {
                "emails" => wanted.email = None,
                "externalid" => wanted.external_id = None,
                "username" => {
                    return Err(ScimError::bad("mutability", "userName cannot be removed"))
                }
                "active" => {
                    return Err(ScimError::bad(
                        "mutability",
                        "active cannot be removed; replace it with true or false",
                    ))
                }
                _ => {}
            },
            ("remove", None, _) => {
                return Err(ScimError::bad(
                    "noTarget",
                    "a remove operation needs a path",
                ))
            }
            ("add" | "replace", _, _) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("a {op} operation needs a value (an object when it has no path)"),
                ))
            }
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("unknown op {op:?}; use add, replace or remove"),
                ))
            }
        }
    }
    let user = store(&caller, &user, &wanted).await?;
    Ok(scim_json(StatusCode::OK, &answer(&caller, &user).await?))
}

/// `DELETE /Users/{id}`: deprovisions the user for good. They are disabled (tokens
/// refused everywhere within a second, sessions ended), every token of theirs is
/// deleted, so that a later User with the same name starts without them, and the
/// resource is gone; the user stays in the audit log.
pub async fn delete(caller: Provisioner, Path(id): Path<String>) -> Result<StatusCode, ScimError> {
    let user = existing(&caller, &id).await?;
    if !user.disabled {
        access::change_access(
            &caller.api.store,
            &user.username,
            true,
            Some(ACTOR.into()),
            caller.ip.clone(),
            Some(VIA),
        )
        .await?;
    }
    access::delete_all_tokens(
        &caller.api.store,
        &user.username,
        Some(ACTOR.into()),
        caller.ip.clone(),
        Some(VIA),
    )
    .await?;
    caller.api.store.leave_all_groups(&user.username).await?;
    caller.api.store.scim_unlink(&user.id).await?;
    caller
        .api
        .audit(crate::store::AuditEvent {
            actor: Some(ACTOR.into()),
            action: "user.deprovisioned",
            username: Some(user.username.clone()),
            ip: Some(caller.ip.clone()),
            detail: Some(json!({ "via": VIA, "scim_id": user.id })),
            ..Default::default()
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}
