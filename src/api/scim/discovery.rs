//! The discovery documents (RFC 7644 §4): what this server supports
//! (`/ServiceProviderConfig`), the resource types it serves, User and Group
//! (`/ResourceTypes`), and their schemas (`/Schemas`), each as a SCIM client reads them
//! before anything else.

use axum::extract::Path;
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use super::groups::GROUP_SCHEMA;
use super::users::USER_SCHEMA;
use super::{scim_json, Provisioner, ScimError, BASE, MAX_RESULTS};

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

fn list(resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

/// `GET /ServiceProviderConfig`.
pub async fn service_provider_config(caller: Provisioner) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [SPC_SCHEMA],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "Authorization: Bearer with the secret set as scim.secret in the gateway's configuration",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}{BASE}/ServiceProviderConfig", caller.origin),
            },
        }),
    )
}

fn user_type(origin: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A user of Deploy whose personal access tokens the gateway checks",
        "schema": USER_SCHEMA,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{origin}{BASE}/ResourceTypes/User"),
        },
    })
}

fn group_type(origin: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A group of Users; its displayName is a role its members carry to Deploy",
        "schema": GROUP_SCHEMA,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{origin}{BASE}/ResourceTypes/Group"),
        },
    })
}

/// `GET /ResourceTypes`.
pub async fn resource_types(caller: Provisioner) -> Response {
    list(vec![user_type(&caller.origin), group_type(&caller.origin)])
}

/// `GET /ResourceTypes/{name}`.
pub async fn resource_type(
    caller: Provisioner,
    Path(name): Path<String>,
) -> Result<Response, ScimError> {
    match name.as_str() {
        "User" => Ok(scim_json(StatusCode::OK, &user_type(&caller.origin))),
        "Group" => Ok(scim_json(StatusCode::OK, &group_type(&caller.origin))),
        _ => Err(ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no resource type {name:?}; this server serves User and Group"),
        )),
    }
}

fn attribute(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    })
}

/// The User schema as this server keeps it: the attributes of RFC 7643's User that it
/// stores; anything else a provider sends is accepted and not kept.
fn user_schema(origin: &str) -> Value {
    let mut username = attribute(
        "userName",
        "string",
        "The Deploy username; fixed once created, since tokens belong to it",
    );
    username["required"] = true.into();
    username["caseExact"] = true.into();
    username["mutability"] = "immutable".into();
    username["uniqueness"] = "server".into();
    let active = attribute(
        "active",
        "boolean",
        "false disables the user: their tokens are refused and their sessions end",
    );
    let mut emails = attribute(
        "emails",
        "complex",
        "The address expiry notices go to; one is kept (the primary one, else the first)",
    );
    emails["multiValued"] = true.into();
    emails["subAttributes"] = json!([attribute("value", "string", "An e-mail address")]);
    let mut groups = attribute(
        "groups",
        "complex",
        "The Groups the user is in (set through /Groups); their displayNames are the user's roles",
    );
    groups["multiValued"] = true.into();
    groups["mutability"] = "readOnly".into();
    let mut group_ref = read_only(attribute("$ref", "reference", "The Group's address"));
    group_ref["referenceTypes"] = json!(["Group"]);
    groups["subAttributes"] = json!([
        read_only(attribute("value", "string", "The Group's id")),
        read_only(attribute("display", "string", "The Group's displayName")),
        group_ref,
        read_only(attribute(
            "type",
            "string",
            "direct: the user is a member of the Group itself"
        )),
    ]);
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User Account",
        "attributes": [username, active, emails, groups],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{origin}{BASE}/Schemas/{USER_SCHEMA}"),
        },
    })
}

fn read_only(mut attribute: Value) -> Value {
    attribute["mutability"] = "readOnly".into();
    attribute
}

/// The Group schema as this server keeps it.
fn group_schema(origin: &str) -> Value {
    let mut name = attribute(
        "displayName",
        "string",
        "The group's name: the role its members carry to Deploy (unique in any case)",
    );
    name["required"] = true.into();
    name["uniqueness"] = "server".into();
    let mut members = attribute("members", "complex", "The Users in the group");
    members["multiValued"] = true.into();
    let mut value = attribute("value", "string", "A User's id");
    value["mutability"] = "immutable".into();
    let mut reference = attribute("$ref", "reference", "The User's address");
    reference["mutability"] = "immutable".into();
    reference["referenceTypes"] = json!(["User"]);
    let mut kind = attribute("type", "string", "User: members are Users");
    kind["mutability"] = "immutable".into();
    kind["canonicalValues"] = json!(["User"]);
    members["subAttributes"] = json!([value, reference, kind,]);
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "Group",
        "attributes": [name, members],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{origin}{BASE}/Schemas/{GROUP_SCHEMA}"),
        },
    })
}

/// `POST /.search`: searching every resource type at once is not offered (501, as
/// RFC 7644 §3.4.3 allows); `GET /Users?filter=` finds users.
pub async fn search_all(_caller: Provisioner) -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "searching all resource types at once is not supported; use GET /Users?filter=userName eq \"…\"",
    )
}

/// `GET /Schemas`.
pub async fn schemas(caller: Provisioner) -> Response {
    list(vec![
        user_schema(&caller.origin),
        group_schema(&caller.origin),
    ])
}

/// `GET /Schemas/{urn}`.
pub async fn schema(caller: Provisioner, Path(urn): Path<String>) -> Result<Response, ScimError> {
    if urn == GROUP_SCHEMA {
        return Ok(scim_json(StatusCode::OK, &group_schema(&caller.origin)));
    }
    if urn != USER_SCHEMA {
        return Err(ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no schema {urn:?}; this server describes {USER_SCHEMA} and {GROUP_SCHEMA}"),
        ));
    }
    Ok(scim_json(StatusCode::OK, &user_schema(&caller.origin)))
}
