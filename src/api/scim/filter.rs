//! The one SCIM filter the identity providers send to find a user before creating it,
//! `userName eq "…"` (RFC 7644 §3.4.2.2); anything else is refused as `invalidFilter`.

use super::ScimError;

const USER_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:User:";

/// Reads `userName eq "value"` (attribute and operator in any case, the attribute
/// optionally with its schema URN) and returns the value.
pub fn username_eq(filter: &str) -> Result<String, ScimError> {
    let refuse = |why: &str| {
        ScimError::bad(
            "invalidFilter",
            format!("filter {filter:?}: {why}; this server supports only userName eq \"…\""),
        )
    };
    let text = filter.trim();
    let (attribute, rest) = text
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| refuse("expected an attribute, an operator and a value"))?;
    let attribute = if attribute.len() > USER_URN_PREFIX.len()
        && attribute[..USER_URN_PREFIX.len()].eq_ignore_ascii_case(USER_URN_PREFIX)
    {
        &attribute[USER_URN_PREFIX.len()..]
    } else {
        attribute
    };
    if !attribute.eq_ignore_ascii_case("userName") {
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
        ] {
            let err = username_eq(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert_eq!(err.scim_type, Some("invalidFilter"), "{bad}");
        }
    }
}
