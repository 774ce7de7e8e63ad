//! Reading the lists `patgate check-deploy` asks Deploy for (the caller's roles, its
//! granted permissions): JSON when Deploy honours `Accept: application/json`, else the
//! texts of the XML elements it answers by default. Deploy shows no example body for
//! either, so the reader is tolerant and says "unreadable" rather than guess at prose.

use serde_json::Value;

/// Names under one scope: `None` for global, else the key Deploy grouped them by (a
/// configuration item id for permissions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub scope: Option<String>,
    pub names: Vec<String>,
}

/// The groups of names in a JSON or XML answer; `None` when it is neither (an HTML page,
/// plain text, broken XML). An empty list is `Some` with no names.
pub fn read(body: &[u8]) -> Option<Vec<Group>> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim_start_matches('\u{feff}').trim();
    match serde_json::from_str::<Value>(text) {
        Ok(value) => from_json(&value),
        Err(_) => from_xml(text),
    }
}

/// Every name in the answer, each once, in order.
pub fn names(groups: &[Group]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in groups.iter().flat_map(|g| &g.names) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Fields that name an item of a list of objects, first match wins.
const NAME_FIELDS: [&str; 3] = ["name", "role", "permission"];

fn json_names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(name) => Some(name.clone()),
            Value::Object(fields) => NAME_FIELDS
                .iter()
                .find_map(|f| fields.get(*f).and_then(Value::as_str))
                .map(str::to_string),
            _ => None,
        })
        .collect()
}

fn from_json(value: &Value) -> Option<Vec<Group>> {
    match value {
        Value::Array(items) => Some(vec![Group {
            scope: None,
            names: json_names(items),
        }]),
        Value::Object(fields) => {
            // `{"roles": [...]}` wraps a list; anything else maps a scope to its names.
            let wrapped = fields.get("roles").or_else(|| fields.get("permissions"));
            if let (1, Some(list @ Value::Array(_))) = (fields.len(), wrapped) {
                return from_json(list);
            }
            let groups = fields
                .iter()
                .filter_map(|(key, names)| {
                    let names = match names {
                        Value::Array(items) => json_names(items),
                        Value::String(name) => vec![name.clone()],
                        _ => return None,
                    };
                    Some(Group {
                        scope: scope(key),
                        names,
                    })
                })
                .collect();
            Some(groups)
        }
        _ => None,
    }
}

/// `""` and `"global"` are Deploy's global scope; anything else names where it applies.
fn scope(key: &str) -> Option<String> {
    let key = key.trim();
    (!key.is_empty() && !key.eq_ignore_ascii_case("global")).then(|| key.to_string())
}

fn from_xml(text: &str) -> Option<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for (key, name) in xml_leaves(text)? {
        let scope = key.as_deref().and_then(scope);
        match groups.iter_mut().find(|g| g.scope == scope) {
            Some(group) => group.names.push(name),
            None => groups.push(Group {
                scope,
                names: vec![name],
            }),
        }
    }
    Some(groups)
}

/// An element still open while reading.
struct Open {
    name: String,
    key: Option<String>,
    name_attribute: Option<String>,
    has_children: bool,
    text: String,
}

impl Open {
    /// The leaf's value: its text, else its `name` attribute (`<role name="x"/>`).
    /// `<id>` leaves are numbers beside a name, not names.
    fn value(&self) -> Option<String> {
        if self.has_children || self.name == "id" {
            return None;
        }
        match self.text.trim() {
            "" => self.name_attribute.clone(),
            text => Some(text.to_string()),
        }
    }
}

/// The leaf elements of a small XML document: each one's text with the `key` attribute
/// of itself or its nearest ancestor that has one. `None` when it is not well-formed
/// XML with one root element, or when it is an HTML page.
fn xml_leaves(text: &str) -> Option<Vec<(Option<String>, String)>> {
    let mut stack: Vec<Open> = Vec::new();
    let mut leaves = Vec::new();
    let mut roots = 0;
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        let before = &rest[..at];
        match stack.last_mut() {
            Some(open) => open.text.push_str(&unescape(before)),
            None if !before.trim().is_empty() => return None,
            None => {}
        }
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("<?") {
            rest = after.split_once("?>")?.1;
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.split_once("-->")?.1;
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let (data, after) = after.split_once("]]>")?;
            stack.last_mut()?.text.push_str(data);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("<!") {
            rest = after.split_once('>')?.1;
        } else {
            let (tag, after) = rest[1..].split_once('>')?;
            rest = after;
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop()?;
                if open.name != name.trim() {
                    return None;
                }
                if let Some(value) = open.value() {
                    let key = open
                        .key
                        .or_else(|| stack.iter().rev().find_map(|o| o.key.clone()));
                    leaves.push((key, value));
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(tag) => (tag, true),
                None => (tag, false),
            };
            let open = element(tag)?;
            match stack.last_mut() {
                Some(parent) => parent.has_children = true,
                None => {
                    roots += 1;
                    if roots > 1 || open.name.eq_ignore_ascii_case("html") {
                        return None;
                    }
                }
            }
            if !empty {
                stack.push(open);
            } else if let Some(value) = open.value() {
                let key = open
                    .key
                    .or_else(|| stack.iter().rev().find_map(|o| o.key.clone()));
                leaves.push((key, value));
            }
        }
    }
    (stack.is_empty() && rest.trim().is_empty() && roots == 1).then_some(leaves)
}

/// An opening tag's name and the two attributes the reader uses.
fn element(tag: &str) -> Option<Open> {
    let tag = tag.trim();
    let end = tag.find(char::is_whitespace).unwrap_or(tag.len());
    let name = &tag[..end];
    if name.is_empty() || name.contains(['<', '"', '\'', '=']) {
        return None;
    }
    let mut open = Open {
        name: name.to_string(),
        key: None,
        name_attribute: None,
        has_children: false,
        text: String::new(),
    };
    let mut rest = tag[end..].trim_start();
    while !rest.is_empty() {
        let (attribute, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let (value, after) = after[1..].split_once(quote)?;
        match attribute.trim() {
            "key" => open.key = Some(unescape(value)),
            "name" => open.name_attribute = Some(unescape(value)),
            _ => {}
        }
        rest = after.trim_start();
    }
    Some(open)
}

/// XML's five named entities and numeric references; anything else stays as written.
fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(names: &[&str]) -> Group {
        Group {
            scope: None,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn scoped(scope: &str, names: &[&str]) -> Group {
        Group {
            scope: Some(scope.to_string()),
            ..global(names)
        }
    }

    #[test]
    fn role_lists_read_in_json_and_xml_alike() {
        let same = [
            r#"["deployers", "viewers"]"#,
            r#"[{"id": 1, "name": "deployers"}, {"role": "viewers"}]"#,
            r#"{"roles": ["deployers", "viewers"]}"#,
            "<list><string>deployers</string><string>viewers</string></list>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<list>\n  <role>\n    deployers\n  </role>\n  <role>viewers</role>\n</list>\n",
            r#"<list><role id="1" name="deployers"/><role><id>2</id><name>viewers</name></role></list>"#,
            "<!-- roles --><list><string><![CDATA[deployers]]></string><string>view&#101;rs</string></list>",
        ];
        for body in same {
            let groups = read(body.as_bytes()).unwrap_or_else(|| panic!("{body}"));
            assert_eq!(names(&groups), ["deployers", "viewers"], "{body}");
        }
        for empty in ["[]", "<list/>", "<list></list>", "{}"] {
            let groups = read(empty.as_bytes()).unwrap();
            assert!(names(&groups).is_empty(), "{empty}");
        }
        assert_eq!(
            names(&read(b"<string>a &amp; b &lt;c&gt; &bogus;</string>").unwrap()),
            ["a & b <c> &bogus;"]
        );
    }

    #[test]
    fn permissions_keep_their_scope() {
        let json =
            r#"{"": ["login", "report#view"], "Applications/App1": ["read", "deploy#initial"]}"#;
        let xml = r#"<map><entry key="global"><list><string>login</string><string>report#view</string></list></entry><entry key="Applications/App1"><string>read</string><string>deploy#initial</string></entry></map>"#;
        for body in [json, xml] {
            assert_eq!(
                read(body.as_bytes()).unwrap(),
                [
                    global(&["login", "report#view"]),
                    scoped("Applications/App1", &["read", "deploy#initial"])
                ],
                "{body}"
            );
        }
    }

    #[test]
    fn what_is_no_list_is_unreadable() {
        for body in [
            "deploy",
            "",
            "true",
            "\"deployers\"",
            "<html><body><p>Login</p></body></html>",
            "<list><string>a</string>",
            "<list><string>a</list></string>",
            "<a/><b/>",
            "<list>text after</list> and more",
            "<list attr=unquoted/>",
        ] {
            assert_eq!(read(body.as_bytes()), None, "{body:?}");
        }
        assert_eq!(read(b"\xff<list/>"), None);
    }
}
