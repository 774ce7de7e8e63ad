//! `/Groups` (RFC 7643 §4.2, RFC 7644 §3): list (with `filter=displayName eq "…"`),
//! get, create, replace, patch and delete, as Okta and Entra ID push groups. A group's
//! `displayName` is a role: the groups a user is in become the roles the gateway
//! asserts for them upstream (the JWT's roles claim; administrators through
//! `sso.admin_roles`), replacing what their last sign-in said, on every replica within
//! a second (the store's change feed). Members are Users of this server, by `id`.
//! Every operation of a request is checked before anything is written.

use std::collections::BTreeSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Map, Value};

use super::users::{external_id, project_as, query, ListQuery, OneQuery};
use super::{scim_json, Provisioner, ScimBody, ScimError, BASE, MAX_RESULTS};
use crate::core::time::rfc3339;
use crate::store::{GroupWrite, Replaced, ScimGroup, FROM_SCIM};

pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The actor of SCIM changes in the audit log.
const ACTOR: &str = "scim";

fn resource(group: &ScimGroup, origin: &str) -> Value {
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            json!({
                "value": m.scim_id,
                "type": "User",
                "$ref": format!("{origin}{BASE}/Users/{}", m.scim_id),
            })
        })
        .collect();
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": rfc3339(group.created_at),
            "lastModified": rfc3339(group.updated_at),
            "location": format!("{origin}{BASE}/Groups/{}", group.id),
        },
    });
    if let Some(external_id) = &group.external_id {
        out["externalId"] = external_id.as_str().into();
    }
    out
}

fn no_group(id: &str) -> ScimError {
    ScimError::new(
        StatusCode::NOT_FOUND,
        None,
        format!("no Group with id {id:?}"),
    )
}

/// Whether an answer with these `attributes`/`excludedAttributes` shows members.
fn shows_members(attributes: Option<&str>, excluded: Option<&str>) -> bool {
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|a| attribute_name(a.trim()))
            .map(|a| a.split(['.', '[']).next().unwrap_or_default().to_string())
            .collect()
    };
    match (attributes, excluded) {
        (Some(wanted), _) if !wanted.trim().is_empty() => {
            names(wanted).iter().any(|a| a == "members")
        }
        (_, Some(unwanted)) => !names(unwanted).iter().any(|a| a == "members"),
        _ => true,
    }
}

/// `GET /Groups`: a page of groups, or the one a `displayName eq` filter names.
pub async fn list(
    caller: Provisioner,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ScimError> {
    let params = query(params)?;
    let name = params
        .filter
        .as_deref()
        .map(super::filter::display_name_eq)
        .transpose()?;
    let start_index = params.start_index.unwrap_or(1).max(1);
    let count = params.count.unwrap_or(100).clamp(0, MAX_RESULTS);
    let members = shows_members(
        params.attributes.as_deref(),
        params.excluded_attributes.as_deref(),
    );
    let (groups, total) = caller
        .api
        .store
        .scim_groups(name.as_deref(), start_index - 1, count, members)
        .await?;
    let resources: Vec<Value> = groups
        .iter()
        .map(|g| {
            project_as(
                resource(g, &caller.origin),
                GROUP_SCHEMA,
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

async fn existing(caller: &Provisioner, id: &str) -> Result<ScimGroup, ScimError> {
    caller
        .api
        .store
        .scim_group(id)
        .await?
        .ok_or_else(|| no_group(id))
}

/// `GET /Groups/{id}`.
pub async fn one(
    caller: Provisioner,
    Path(id): Path<String>,
    params: Result<Query<OneQuery>, QueryRejection>,
) -> Result<Response, ScimError> {
    let params = query(params)?;
    let group = existing(&caller, &id).await?;
    Ok(scim_json(
        StatusCode::OK,
        &project_as(
            resource(&group, &caller.origin),
            GROUP_SCHEMA,
            params.attributes.as_deref(),
            params.excluded_attributes.as_deref(),
        ),
    ))
}

/// What a request may set on a Group, read and checked before anything is written.
#[derive(Debug, Clone)]
struct Wanted {
    display_name: String,
    external_id: Option<String>,
    /// Members by User id.
    members: BTreeSet<String>,
}

impl Wanted {
    fn from(group: &ScimGroup) -> Wanted {
        Wanted {
            display_name: group.display_name.clone(),
            external_id: group.external_id.clone(),
            members: group.members.iter().map(|m| m.scim_id.clone()).collect(),
        }
    }
}

/// An attribute name as written in a body or a path: any case, optionally with the
/// Group schema's URN in front.
fn attribute_name(key: &str) -> String {
    let key = if key.len() > GROUP_SCHEMA.len() + 1
        && key.is_char_boundary(GROUP_SCHEMA.len())
        && key[..GROUP_SCHEMA.len()].eq_ignore_ascii_case(GROUP_SCHEMA)
        && key.as_bytes()[GROUP_SCHEMA.len()] == b':'
    {
        &key[GROUP_SCHEMA.len() + 1..]
    } else {
        key
    };
    key.to_ascii_lowercase()
}

fn display_name(value: &Value) -> Result<String, ScimError> {
    let Some(name) = value.as_str() else {
        return Err(ScimError::bad(
            "invalidValue",
            "displayName must be a string",
        ));
    };
    if name.trim().is_empty()
        || name.chars().count() > 255
        || name.trim() != name
        || name.chars().any(char::is_control)
        || crate::core::text::has_format_chars(name)
    {
        return Err(ScimError::bad(
            "invalidValue",
            "displayName must be 1 to 255 characters, without spaces at either end, control or invisible formatting characters",
        ));
    }
    Ok(name.to_string())
}

/// The User ids in a `members` value: a list of `{"value": id}` (or one such object).
fn member_ids(value: &Value) -> Result<Vec<String>, ScimError> {
    let list = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "members must be a list of {\"value\": \"<User id>\"} objects",
            ))
        }
    };
    list.iter()
        .map(|item| match item.get("value") {
            // A NUL is in no id, and PostgreSQL refuses it in any text it is sent.
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 255 && !id.contains('\0') => {
                Ok(id.clone())
            }
            _ => Err(ScimError::bad(
                "invalidValue",
                "each member needs a value: the id of a User of this server",
            )),
        })
        .collect()
}

/// Applies one attribute of a body (create, replace, or a PATCH value without a path).
/// `add` adds members rather than replacing them. Attributes this server does not
/// keep are ignored; `id` and `meta` are the server's own.
fn set_attribute(
    wanted: &mut Wanted,
    key: &str,
    value: &Value,
    add: bool,
) -> Result<(), ScimError> {
    match attribute_name(key).as_str() {
        "displayname" => wanted.display_name = display_name(value)?,
        "externalid" => wanted.external_id = external_id(value)?,
        "members" => {
            let ids = member_ids(value)?;
            if !add {
                wanted.members.clear();
            }
            wanted.members.extend(ids);
        }
        _ => {}
    }
    Ok(())
}

/// Reads a full Group (create or replace): `externalId` and `members` left out are
/// cleared.
fn read_group(body: &Map<String, Value>) -> Result<Wanted, ScimError> {
    if !body.keys().any(|k| attribute_name(k) == "displayname") {
        return Err(ScimError::bad("invalidValue", "displayName is required"));
    }
    let mut wanted = Wanted {
        display_name: String::new(),
        external_id: None,
        members: BTreeSet::new(),
    };
    for (key, value) in body {
        set_attribute(&mut wanted, key, value, false)?;
    }
    Ok(wanted)
}

/// What a PATCH path names.
enum Target {
    DisplayName,
    ExternalId,
    Members,
    /// `members[value eq "id"]` (Okta removes a member this way).
    Member(String),
}

fn target(path: &str) -> Result<Target, ScimError> {
    let invalid = |why: &str| {
        ScimError::bad(
            "invalidPath",
            format!("path {path:?}: {why}; this server takes displayName, externalId, members and members[value eq \"<User id>\"]"),
        )
    };
    let name = attribute_name(path.trim());
    if let Some(inner) = name.strip_prefix("members[") {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(invalid("a filter in [ ] must close, with nothing after it"));
        };
        // The value keeps its case: the original text from the same position.
        let start = path.trim().len() - inner.len() - 1;
        let original = &path.trim()[start..path.trim().len() - 1];
        let id = super::filter::value_eq(original)
            .map_err(|_| invalid("the filter must be value eq \"<User id>\""))?;
        return Ok(Target::Member(id));
    }
    match name.as_str() {
        "displayname" => Ok(Target::DisplayName),
        "externalid" => Ok(Target::ExternalId),
        "members" => Ok(Target::Members),
        _ => Err(invalid("not an attribute of Group this server keeps")),
    }
}

/// Applies one PATCH operation (RFC 7644 §3.5.2) to `wanted`.
fn apply(wanted: &mut Wanted, operation: &Value) -> Result<(), ScimError> {
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
                set_attribute(wanted, key, value, op == "add")?;
            }
        }
        ("add" | "replace", Some(path), Some(value)) => match target(path)? {
            Target::DisplayName => wanted.display_name = display_name(value)?,
            Target::ExternalId => wanted.external_id = external_id(value)?,
            Target::Members => {
                let ids = member_ids(value)?;
                if op == "replace" {
                    wanted.members.clear();
                }
                wanted.members.extend(ids);
            }
            Target::Member(_) => {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{op} of {path:?}: add members with path \"members\" and a value list"),
                ))
            }
        },
        ("remove", Some(path), value) => match target(path)? {
            Target::DisplayName => {
                return Err(ScimError::bad(
                    "mutability",
                    "displayName cannot be removed; replace it",
                ))
            }
            Target::ExternalId => wanted.external_id = None,
            // Entra ID names the members to remove in the value; without one, all go.
            Target::Members => match value {
                Some(value) if !value.is_null() => {
                    for id in member_ids(value)? {
                        wanted.members.remove(&id);
                    }
                }
                _ => wanted.members.clear(),
            },
            Target::Member(id) => {
                wanted.members.remove(&id);
            }
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
    Ok(())
}

/// The usernames of the wanted members; an id that is no User here is refused.
async fn member_names(caller: &Provisioner, wanted: &Wanted) -> Result<Vec<String>, ScimError> {
    let ids: Vec<String> = wanted.members.iter().cloned().collect();
    caller.api.store.scim_usernames(&ids).await?.map_err(|id| {
        ScimError::bad(
            "invalidValue",
            format!(
                "member {id:?} is not the id of a User of this server; provision the User first"
            ),
        )
    })
}

fn name_taken(name: &str) -> ScimError {
    ScimError::new(
        StatusCode::CONFLICT,
        Some("uniqueness"),
        format!(
            "a Group with displayName {name:?} exists already (names are compared in any case)"
        ),
    )
}

/// Sets each touched user's roles to the groups they are in now.
async fn reapply_roles(caller: &Provisioner, usernames: &[String]) -> Result<(), ScimError> {
    let mut names: Vec<&str> = usernames.iter().map(String::as_str).collect();
    let mut groups = caller.api.store.groups_of(&names).await?;
    // A write of another group at the same time may set roles it read before this
    // one's change: whoever finds the groups changed after setting sets them again.
    for _ in 0..REAPPLY_ATTEMPTS {
        for (username, groups) in &groups {
            let roles: Vec<String> = groups.iter().map(|(_, name)| name.clone()).collect();
            caller
                .api
                .signin
                .apply_roles(
                    &caller.api.store,
                    username,
                    &roles,
                    FROM_SCIM,
                    Some(ACTOR.into()),
                    Some(caller.ip.clone()),
                )
                .await?;
        }
        let now = caller.api.store.groups_of(&names).await?;
        let changed: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| now.get(*name) != groups.get(*name))
            .collect();
        if changed.is_empty() {
            break;
        }
        names = changed;
        groups = now
            .into_iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .collect();
    }
    Ok(())
}

/// How often [`reapply_roles`] sets a user's roles again when their groups changed
/// meanwhile.
const REAPPLY_ATTEMPTS: usize = 20;

/// `POST /Groups`.
pub async fn create(caller: Provisioner, ScimBody(body): ScimBody) -> Result<Response, ScimError> {
    let wanted = read_group(&body)?;
    let members = member_names(&caller, &wanted).await?;
    let id = crate::store::new_scim_id();
    let Some(change) = caller
        .api
        .store
        .scim_group_create(
            &id,
            GroupWrite {
                display_name: &wanted.display_name,
                external_id: wanted.external_id.as_deref(),
                members: &members,
            },
        )
        .await?
    else {
        return Err(name_taken(&wanted.display_name));
    };
    reapply_roles(&caller, &change.touched).await?;
    audit(&caller, "group.provisioned", &id, &wanted.display_name).await;
    let group = change.group.ok_or_else(|| no_group(&id))?;
    let mut response = scim_json(StatusCode::CREATED, &resource(&group, &caller.origin));
    if let Ok(location) =
        http::HeaderValue::from_str(&format!("{}{BASE}/Groups/{}", caller.origin, group.id))
    {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Ok(response)
}

async fn audit(caller: &Provisioner, action: &'static str, id: &str, name: &str) {
    caller
        .api
        .audit(crate::store::AuditEvent {
            actor: Some(ACTOR.into()),
            action,
            ip: Some(caller.ip.clone()),
            detail: Some(json!({ "via": "scim", "scim_id": id, "group": name })),
            ..Default::default()
        })
        .await;
}

/// Writes `wanted`; with `read` (the members' usernames it was computed from), only
/// if those are still the members: `None` when they are not, and nothing was written.
async fn write(
    caller: &Provisioner,
    id: &str,
    wanted: &Wanted,
    read: Option<&BTreeSet<String>>,
) -> Result<Option<ScimGroup>, ScimError> {
    let members = member_names(caller, wanted).await?;
    let change = match caller
        .api
        .store
        .scim_group_replace(
            id,
            GroupWrite {
                display_name: &wanted.display_name,
                external_id: wanted.external_id.as_deref(),
                members: &members,
            },
            read,
        )
        .await?
    {
        Replaced::Done(change) => change,
        Replaced::NoSuchGroup => return Err(no_group(id)),
        Replaced::NameTaken => return Err(name_taken(&wanted.display_name)),
        Replaced::Stale => return Ok(None),
    };
    reapply_roles(caller, &change.touched).await?;
    change.group.ok_or_else(|| no_group(id)).map(Some)
}

/// `PUT /Groups/{id}`: replaces the Group.
pub async fn replace(
    caller: Provisioner,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    existing(&caller, &id).await?;
    let wanted = read_group(&body)?;
    let group = write(&caller, &id, &wanted, None)
        .await?
        .ok_or_else(|| no_group(&id))?;
    Ok(scim_json(StatusCode::OK, &resource(&group, &caller.origin)))
}

/// `PATCH /Groups/{id}`: `add`, `replace` and `remove` of `displayName`, `externalId`
/// and `members`, with or without a path, as Okta and Entra ID send them.
pub async fn patch(
    caller: Provisioner,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let operations = super::patch_operations(&body)?;
    // Providers send PATCHes of one group at once (a member each): each is applied to
    // the members as they are when it is written, read again if another came first.
    for _ in 0..PATCH_ATTEMPTS {
        let group = existing(&caller, &id).await?;
        let read: BTreeSet<String> = group.members.iter().map(|m| m.username.clone()).collect();
        let mut wanted = Wanted::from(&group);
        for operation in operations {
            apply(&mut wanted, operation)?;
        }
        if let Some(group) = write(&caller, &id, &wanted, Some(&read)).await? {
            return Ok(scim_json(StatusCode::OK, &resource(&group, &caller.origin)));
        }
    }
    Err(ScimError::new(
        StatusCode::CONFLICT,
        None,
        format!("Group {id:?} was changed by {PATCH_ATTEMPTS} other requests while this PATCH was applied; send it again"),
    ))
}

/// How often a PATCH is applied again when other writes of the group came first.
const PATCH_ATTEMPTS: usize = 50;

/// `DELETE /Groups/{id}`: the group is gone, and with it the role of its members.
pub async fn delete(caller: Provisioner, Path(id): Path<String>) -> Result<StatusCode, ScimError> {
    let group = existing(&caller, &id).await?;
    let members = caller
        .api
        .store
        .scim_group_delete(&id)
        .await?
        .ok_or_else(|| no_group(&id))?;
    reapply_roles(&caller, &members).await?;
    audit(&caller, "group.deprovisioned", &id, &group.display_name).await;
    Ok(StatusCode::NO_CONTENT)
}
