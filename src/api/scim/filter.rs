//! The one SCIM filter the identity providers send to find a resource before creating
//! it (RFC 7644 §3.4.2.2): `userName eq "…"` for Users, `displayName eq "…"` for
//! Groups; anything else is refused as `invalidFilter`.

use super::ScimError;

const USER_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:User:";
const GROUP_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:Group:";

/// Reads `userName eq "value"` (attribute and operator in any case, the attribute
/// optionally with its schema URN) and returns the value.
pub fn username_eq(filter: &str) -> Result<String, ScimError> {
    attribute_eq(filter, USER_URN_PREFIX, "userName")
}

/// Reads `displayName eq "value"`, as [`username_eq`] does `userName`.
pub fn display_name_eq(filter: &str) -> Result<String, ScimError> {
    attribute_eq(filter, GROUP_URN_PREFIX, "displayName")
}

/// Reads `value eq "…"`, the filter of a PATCH path such as `members[value eq "…"]`.
pub fn value_eq(filter: &str) -> Result<String, ScimError> {
    attribute_eq(filter, "", "value")
}

fn attribute_eq(filter: &str, urn_prefix: &str, name: &str) -> Result<String, ScimError> {
    let refuse = |why: &str| {
        ScimError::bad(
            "invalidFilter",
            format!("filter {filter:?}: {why}; this server supports only {name} eq \"…\""),
        )
    };
    let text = filter.trim();
    let (attribute, rest) = text
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| refuse("expected an attribute, an operator and a value"))?;
    let attribute = if attribute.len() > urn_prefix.len()
        && attribute.is_char_boundary(urn_prefix.len())
        && attribute[..urn_prefix.len()].eq_ignore_ascii_case(urn_prefix)
    {
        &attribute[urn_prefix.len()..]
    } else {
        attribute
    };
    if !attribute.eq_ignore_ascii_case(name) {
        return Err(refuse(&format!(
            "attribute {attribute:?} cannot be filtered on"
        )));
    }
    let rest = rest.trim_start();
    let (operator, value) = rest
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| refuse("expected an operator and a value"))?;
    if !operator.eq_ignore_ascii_case("eq") {
        return Err(refuse(&format!("operator {operator:?} is not supported")));
    }
    let value = value.trim();
    if !value.starts_with('"') {
        return Err(refuse("the value must be a quoted string"));
    }
    // A JSON string, escapes included; nothing may follow it.
    let mut stream = serde_json::Deserializer::from_str(value).into_iter::<String>();
    let parsed = match stream.next() {
        Some(Ok(parsed)) => parsed,
        _ => return Err(refuse("the value is not a well-formed quoted string")),
    };
    if !value[stream.byte_offset()..].trim().is_empty() {
        return Err(refuse("nothing may follow the value (no and, or, not)"));
    }
    // No name or id here holds one, and PostgreSQL refuses it in any text it is sent.
    if parsed.contains('\0') {
        return Err(refuse("the value holds a NUL character (\\u0000)"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_eq_is_read_in_the_forms_providers_send() {
        assert_eq!(username_eq(r#"userName eq "alice""#).unwrap(), "alice");
        assert_eq!(username_eq(r#"username EQ "a\"b""#).unwrap(), "a\"b");
        assert_eq!(
            username_eq(
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@example.com""#
            )
            .unwrap(),
            "bob@example.com"
        );
        assert_eq!(username_eq("  userName  eq  \"x y\"  ").unwrap(), "x y");
        assert_eq!(
            display_name_eq(r#"displayName eq "Deploy Admins""#).unwrap(),
            "Deploy Admins"
        );
        assert!(display_name_eq(r#"userName eq "a""#).is_err());
        assert!(username_eq(r#"displayName eq "a""#).is_err());
    }

    #[test]
    fn everything_else_is_an_invalid_filter() {
        for bad in [
            "",
            "userName",
            r#"userName sw "a""#,
            r#"emails eq "a@example.com""#,
            r#"userName eq alice"#,
            r#"userName eq "alice" or userName eq "bob""#,
            r#"userName eq "unterminated"#,
            r#"(userName eq "alice")"#,
            r#"userName eq "a\u0000b""#,
        ] {
            let err = username_eq(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert_eq!(err.scim_type, Some("invalidFilter"), "{bad}");
        }
    }
}
