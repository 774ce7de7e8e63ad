//! The rules the API's text and numbers follow, written once: the handlers check input
//! with these predicates and limits, and the OpenAPI document's schemas are built from
//! the same ones, so that what the document allows is what the API accepts.
//!
//! Patterns are ECMA-262 regular expressions as JSON Schema reads them, built only from
//! explicit character classes (no `\d`, `\w`, `\s`, `\p{…}`, look-arounds), so that
//! every engine (ECMA-262, Python, Rust) reads them alike. Characters above U+FFFF
//! appear as themselves.

use std::fmt::Write;
use std::sync::LazyLock;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use utoipa::openapi::schema::{AnyOfBuilder, Object, ObjectBuilder, Schema, SchemaType, Type};

pub mod inventory;
pub mod notify;

/// Longest token name, in characters.
pub const TOKEN_NAME_MAX_CHARS: usize = 100;
/// Longest username typed at sign-in, in characters (after trimming).
pub const USERNAME_MAX_CHARS: usize = 255;
/// Longest SSO subject, in characters (after trimming).
pub const SUBJECT_MAX_CHARS: usize = 255;
/// Longest SMTP server item name, in characters.
pub const SMTP_NAME_MAX_CHARS: usize = 100;
/// Longest SMTP host, in characters.
pub const HOST_MAX_CHARS: usize = 253;
/// Longest e-mail address (RFC 5321), and its local part.
pub const EMAIL_MAX_CHARS: usize = 254;
pub const EMAIL_LOCAL_MAX_CHARS: usize = 64;
/// Longest domain label.
pub const LABEL_MAX_CHARS: usize = 63;
/// Longest display name in `Name <address>`.
pub const DISPLAY_NAME_MAX_CHARS: usize = 64;
/// Pages and their size in lists.
pub const PER_PAGE_MAX: i64 = 200;
pub const PER_PAGE_DEFAULT: i64 = 50;
/// Outcomes listed by the notifications status.
pub const OUTCOMES_MAX: i64 = 500;
pub const OUTCOMES_DEFAULT: i64 = 50;
/// Days before expiry at which the notice goes out.
pub const DAYS_BEFORE_MIN: i64 = 1;
pub const DAYS_BEFORE_MAX: i64 = 365;
/// Longest grace of a rotated-away token.
pub const GRACE_MAX_SECS: i64 = 24 * 3600;
/// Most entries in one token's address allowlist.
pub const MAX_ALLOWED_ADDRESSES: usize = 64;
/// Longest allowlist entry (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128`).
pub const ALLOWED_ADDRESS_MAX_CHARS: usize = 49;
/// JavaMail property keys and values.
pub const PROPERTY_KEY_MAX_CHARS: usize = 200;
pub const PROPERTY_VALUE_MAX_CHARS: usize = 1000;

/// A Unicode format character (general category Cf: right-to-left overrides,
/// zero-width spaces and joiners, …), which makes one name read as another.
pub fn is_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// A character a token name may hold: no control or format characters, no `<` or `>`
/// (names appear in pages and e-mails).
pub fn token_name_char(c: char) -> bool {
    !(c.is_control() || is_format(c) || c == '<' || c == '>')
}

/// A character a username may hold (besides the spaces trimmed around it).
pub fn username_char(c: char) -> bool {
    !(c.is_control() || is_format(c) || c == ':')
}

/// A character an SSO subject may hold.
pub fn subject_char(c: char) -> bool {
    !c.is_control()
}

/// A character an SMTP server item's name may hold: it becomes the last part of its id.
pub fn smtp_name_char(c: char) -> bool {
    !(c.is_control() || c == '/')
}

/// `atext` of RFC 5322, in ASCII: what the local part of an address is made of.
pub fn atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
}

/// A character of an SMTP host (a name, an IPv4 address or a bracketed IPv6 one).
pub fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')
}

/// Whether `text` is `first`, then any of `middle`, then `last`, `min` to `max`
/// characters in all: the shape every name rule below has.
fn edged(text: &str, max: usize, middle: fn(char) -> bool) -> bool {
    let count = text.chars().count();
    let edge = |c: Option<char>| c.is_some_and(|c| middle(c) && !c.is_whitespace());
    (1..=max).contains(&count)
        && text.chars().all(middle)
        && edge(text.chars().next())
        && edge(text.chars().last())
}

/// A token name: 1 to 100 characters of [`token_name_char`], not starting or ending
/// with a space.
pub fn is_token_name(name: &str) -> bool {
    edged(name, TOKEN_NAME_MAX_CHARS, token_name_char)
}

/// A username as typed at sign-in, spaces around it aside.
pub fn is_username(name: &str) -> bool {
    edged(name.trim(), USERNAME_MAX_CHARS, username_char)
}

/// An SSO subject, spaces around it aside.
pub fn is_subject(subject: &str) -> bool {
    edged(subject.trim(), SUBJECT_MAX_CHARS, subject_char)
}

/// An SMTP server item's name.
pub fn is_smtp_name(name: &str) -> bool {
    edged(name, SMTP_NAME_MAX_CHARS, smtp_name_char)
}

/// An SMTP host: [`host_char`]s, not starting with `.` or `-`.
pub fn is_host(host: &str) -> bool {
    (1..=HOST_MAX_CHARS).contains(&host.len())
        && host.chars().all(host_char)
        && !host.starts_with(['.', '-'])
}

/// A domain label: letters, digits and `-`, not at either end.
fn is_label(label: &str) -> bool {
    (1..=LABEL_MAX_CHARS).contains(&label.len())
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// An e-mail address in ASCII: a dot-atom local part of at most 64 characters, `@`,
/// and a domain of two or more labels; 254 characters at most.
pub fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= EMAIL_MAX_CHARS
        && email.is_ascii()
        && (1..=EMAIL_LOCAL_MAX_CHARS).contains(&local.len())
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
        && domain.split('.').count() >= 2
        && domain.split('.').all(is_label)
}

/// A display name in `Name <address>`: letters, digits, spaces, `.`, `_` and `-`,
/// starting and ending with a letter or digit, without `..`.
fn is_display_name(name: &str) -> bool {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-');
    (1..=DISPLAY_NAME_MAX_CHARS).contains(&name.len())
        && name.chars().all(inner)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// An address as [`is_email`], or `Name <address>`.
pub fn is_mailbox(text: &str) -> bool {
    if is_email(text) {
        return true;
    }
    let Some(rest) = text.strip_suffix('>') else {
        return false;
    };
    let Some((name, address)) = rest.split_once(" <") else {
        return false;
    };
    text.len() <= EMAIL_MAX_CHARS && is_display_name(name) && is_email(address)
}

/// A grace such as `0s`, `90s`, `15m` or `1h` (at most 24 hours) in seconds: a whole
/// number without leading zeros and one unit, `s`, `m` or `h`.
pub fn parse_grace(text: &str) -> Option<i64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    let canonical = digits == "0" || (!digits.starts_with('0') && !digits.is_empty());
    if !canonical || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = digits.parse::<i64>().ok()? * unit;
    (secs <= GRACE_MAX_SECS).then_some(secs)
}

/// An RFC 3339 instant as the API takes it (`2026-01-31T00:00:00Z`,
/// `2026-01-31T09:00:00.5+09:00`): upper-case `T` and `Z`, seconds 00 to 59 (no leap
/// second), at most nine digits of fraction, a real calendar date. Seconds since the
/// Unix epoch, fraction dropped.
pub fn parse_instant(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: &u8, b: &u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (h, m) = (two(h1, h2)?, two(m1, m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

// ---------------------------------------------------------------- patterns

/// The characters for which `keep` holds, as the inside of a character class.
fn class(keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut start: Option<char> = None;
    let mut last = '\0';
    let flush = |out: &mut String, from: char, to: char| {
        let one = |out: &mut String, c: char| {
            if (c as u32) < 0x10000 {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        };
        one(out, from);
        if to != from {
            out.push('-');
            one(out, to);
        }
    };
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        match (keep(c), start) {
            (true, None) => start = Some(c),
            (false, Some(from)) => {
                flush(&mut out, from, last);
                start = None;
            }
            _ => {}
        }
        last = c;
    }
    if let Some(from) = start {
        flush(&mut out, from, last);
    }
    out
}

/// `[^…]` of the characters `allowed` refuses.
fn all_but(allowed: fn(char) -> bool) -> String {
    format!("[^{}]", class(move |c| !allowed(c)))
}

/// The pattern of [`edged`]: `max` characters of `middle`, not starting or ending
/// with a space.
fn edged_pattern(max: usize, middle: fn(char) -> bool) -> String {
    let inner = all_but(middle);
    let edge = format!("[^{}]", class(move |c| !middle(c) || c.is_whitespace()));
    format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2)
}

/// Spaces that may stand around a trimmed value.
fn spaces() -> String {
    format!("[{}]*", class(char::is_whitespace))
}

static TOKEN_NAME: LazyLock<String> =
    LazyLock::new(|| format!("^{}$", edged_pattern(TOKEN_NAME_MAX_CHARS, token_name_char)));
static USERNAME: LazyLock<String> = LazyLock::new(|| {
    let s = spaces();
    format!(
        "^{s}{}{s}$",
        edged_pattern(USERNAME_MAX_CHARS, username_char)
    )
});
static SUBJECT: LazyLock<String> = LazyLock::new(|| {
    let s = spaces();
    format!("^{s}{}{s}$", edged_pattern(SUBJECT_MAX_CHARS, subject_char))
});
static SMTP_NAME: LazyLock<String> =
    LazyLock::new(|| format!("^{}$", edged_pattern(SMTP_NAME_MAX_CHARS, smtp_name_char)));

const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

/// `local@domain`; the length of the local part and its dots are checked apart.
fn address_pattern() -> String {
    format!("[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,{EMAIL_LOCAL_MAX_CHARS}}}@{LABEL}(?:\\.{LABEL})+")
}

/// Text that may not contain NUL (U+0000), which no database keeps.
pub const NO_NUL: &str = "^[^\\u0000]*$";
/// A host of [`is_host`].
pub const HOST: &str = "^[A-Za-z0-9:\\[\\]_][A-Za-z0-9.:\\[\\]_-]{0,252}$";
/// An instant of [`parse_instant`].
pub const INSTANT: &str = "^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$";
/// An allowlist entry's characters; whether it is an address or network is checked
/// by parsing.
pub const ALLOWED_ADDRESS: &str = "^[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?$";

/// The whole numbers from 0 to `max` without leading zeros.
fn up_to(max: u64) -> String {
    let digits: Vec<u64> = max
        .to_string()
        .bytes()
        .map(|b| u64::from(b - b'0'))
        .collect();
    if digits.len() == 1 {
        return format!("[0-{max}]");
    }
    let mut alternatives = vec!["[0-9]".to_string()];
    for len in 2..digits.len() {
        alternatives.push(format!("[1-9][0-9]{{{}}}", len - 1));
    }
    let mut prefix = String::new();
    for (i, &d) in digits.iter().enumerate() {
        let lowest = u64::from(i == 0);
        if d > lowest {
            let rest = digits.len() - i - 1;
            let tail = if rest > 0 {
                format!("[0-9]{{{rest}}}")
            } else {
                String::new()
            };
            let below = if d - 1 == lowest {
                lowest.to_string()
            } else {
                format!("[{lowest}-{}]", d - 1)
            };
            alternatives.push(format!("{prefix}{below}{tail}"));
        }
        prefix.push(char::from(b'0' + d as u8));
    }
    alternatives.push(prefix);
    format!("(?:{})", alternatives.join("|"))
}

static GRACE: LazyLock<String> = LazyLock::new(|| {
    let max = GRACE_MAX_SECS as u64;
    format!(
        "^(?:{}s|{}m|{}h)$",
        up_to(max),
        up_to(max / 60),
        up_to(max / 3600)
    )
});

pub fn token_name() -> &'static str {
    &TOKEN_NAME
}

pub fn username() -> &'static str {
    &USERNAME
}

pub fn subject() -> &'static str {
    &SUBJECT
}

pub fn smtp_name() -> &'static str {
    &SMTP_NAME
}

pub fn grace() -> &'static str {
    &GRACE
}

// ---------------------------------------------------------------- schemas

fn string(nullable: bool) -> ObjectBuilder {
    let kind = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(kind)
}

fn patterned(pattern: &str, max: usize, description: &str) -> ObjectBuilder {
    string(false)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
}

/// The extension that marks a schema whose values must also keep their dots in place
/// (no `..`, no dot first in the local part or just before `@`); JSON Schema says it
/// with `not`, which the document adds where it finds the mark ([`dots_in_place`]).
pub const DOTS_MARK: &str = "x-dots-in-place";

/// The `not` a schema marked with [`DOTS_MARK`] gets.
pub fn dots_in_place() -> serde_json::Value {
    serde_json::json!({"anyOf": [
        {"type": "string", "pattern": "\\.\\."},
        {"type": "string", "pattern": "(?:^|<)\\."},
        {"type": "string", "pattern": "\\.@"},
    ]})
}

fn email_object() -> Object {
    string(false)
        .max_length(Some(EMAIL_MAX_CHARS))
        .pattern(Some(format!("^{}$", address_pattern())))
        .build()
}

fn display_object() -> Object {
    let name = "[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9])?";
    string(false)
        .max_length(Some(EMAIL_MAX_CHARS))
        .pattern(Some(format!("^{name} <{}>$", address_pattern())))
        .build()
}

fn marked(items: Vec<Schema>, description: String) -> Schema {
    let mut any = AnyOfBuilder::new()
        .description(Some(description))
        .extensions(Some(
            utoipa::openapi::extensions::ExtensionsBuilder::new()
                .add(DOTS_MARK, true)
                .build(),
        ));
    for item in items {
        any = any.item(item);
    }
    Schema::AnyOf(any.build())
}

fn nothing() -> Vec<Schema> {
    vec![
        Schema::Object(ObjectBuilder::new().schema_type(Type::Null).build()),
        Schema::Object(string(false).max_length(Some(0)).build()),
    ]
}

const EMAIL_TEXT: &str = "An e-mail address in ASCII: a local part of at most 64 characters \
    (letters, digits, `!#$%&'*+/=?^_`{|}~-` and dots between them), `@`, a domain of two or \
    more labels (letters, digits, `-` inside); 254 characters at most.";

/// An e-mail address of [`is_email`].
pub fn email_schema() -> Schema {
    marked(vec![Schema::Object(email_object())], EMAIL_TEXT.into())
}

/// An e-mail address, or `""` or null to remove it.
pub fn email_or_nothing_schema() -> Schema {
    let mut items = vec![Schema::Object(email_object())];
    items.extend(nothing());
    marked(items, format!("{EMAIL_TEXT} `\"\"` or null removes it."))
}

const MAILBOX_TEXT: &str = "An e-mail address (ASCII, as for the users' addresses), or \
    `Name <address>` with a name of letters, digits, spaces, `.`, `_` and `-`.";

/// A mailbox of [`is_mailbox`].
pub fn mailbox_schema() -> Schema {
    let items = vec![
        Schema::Object(email_object()),
        Schema::Object(display_object()),
    ];
    marked(items, MAILBOX_TEXT.into())
}

/// A mailbox, or `""` or null for none.
pub fn mailbox_or_nothing_schema() -> Schema {
    let mut items = vec![
        Schema::Object(email_object()),
        Schema::Object(display_object()),
    ];
    items.extend(nothing());
    marked(items, format!("{MAILBOX_TEXT} `\"\"` or null: none."))
}

/// A mailbox, or null to keep the one there is.
pub fn mailbox_or_null_schema() -> Schema {
    let items = vec![
        Schema::Object(email_object()),
        Schema::Object(display_object()),
        Schema::Object(ObjectBuilder::new().schema_type(Type::Null).build()),
    ];
    marked(items, format!("{MAILBOX_TEXT} Null or absent: unchanged."))
}

/// A JavaMail property key: text with something besides spaces (kept trimmed), at
/// most 200 characters.
pub fn is_property_key(key: &str) -> bool {
    !key.trim().is_empty() && key.chars().count() <= PROPERTY_KEY_MAX_CHARS
}

/// JavaMail properties: keys of [`is_property_key`], values text of at most 1000
/// characters, `true`/`false` or numbers.
pub fn properties_schema() -> Object {
    let key = string(false)
        .max_length(Some(PROPERTY_KEY_MAX_CHARS))
        .pattern(Some(format!(
            "^[^\\u0000]*[^\\u0000{}][^\\u0000]*$",
            class(char::is_whitespace)
        )))
        .build();
    let value = utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            string(false)
                .max_length(Some(PROPERTY_VALUE_MAX_CHARS))
                .pattern(Some(NO_NUL)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .build();
    let mut schema = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .additional_properties(Some(Schema::OneOf(value)))
        .description(Some(
            "JavaMail properties (`mail.smtp.starttls.enable`, `mail.smtp.timeout`, …): text \
             values, `true`/`false` and numbers are taken as text. Keys are trimmed. A property \
             the gateway acts on with a value it cannot use is 422 `invalid_smtp_properties`. \
             Null or absent: unchanged.",
        ))
        .build();
    schema.property_names = Some(Box::new(Schema::Object(key)));
    schema
}

pub fn token_name_schema() -> Object {
    patterned(
        token_name(),
        TOKEN_NAME_MAX_CHARS,
        "1 to 100 characters; no control characters, invisible formatting characters \
         (Unicode Cf), `<` or `>`; not starting or ending with a space; unique among your \
         live tokens (409 otherwise).",
    )
    .build()
}

pub fn username_schema() -> Object {
    string(false)
        .pattern(Some(username()))
        .description(Some(
            "A Deploy username: 1 to 255 characters (spaces around it are trimmed) without \
             `:`, control or invisible formatting characters.",
        ))
        .build()
}

pub fn password_schema() -> Object {
    string(false)
        .min_length(Some(1))
        .description(Some(
            "The Deploy password. A personal access token given here (or as the username) is \
             400 `token_not_password`.",
        ))
        .build()
}

pub fn subject_schema() -> Object {
    string(false)
        .pattern(Some(subject()))
        .description(Some(
            "The provider's subject for the person (the ID token's `sub`): 1 to 255 \
             characters without control characters (spaces around it are trimmed).",
        ))
        .build()
}

pub fn smtp_name_schema(nullable: bool) -> Object {
    let mut schema = patterned(
        smtp_name(),
        SMTP_NAME_MAX_CHARS,
        "1 to 100 characters, no `/` or control characters, not starting or ending with a \
         space; it becomes the last part of the id.",
    )
    .build();
    if nullable {
        schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    }
    schema
}

pub fn host_schema(nullable: bool) -> Object {
    let mut schema = patterned(
        HOST,
        HOST_MAX_CHARS,
        "A host name or IP address (letters, digits, `.`, `-`, `:`, `[`, `]`, `_`; not \
         starting with `.` or `-`), like smtp.example.com.",
    )
    .build();
    if nullable {
        schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    }
    schema
}

pub fn grace_schema() -> Object {
    string(true)
        .pattern(Some(grace()))
        .description(Some(
            "A whole number and one unit, `s`, `m` or `h`, from `0s` to `24h` (`90s`, `15m`, \
             `1h`); null or absent: `0s`, the old token stops at once, and a later use of it \
             revokes the new one.",
        ))
        .build()
}

pub fn instant_schema() -> Object {
    string(true)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .pattern(Some(INSTANT))
        .build()
}

pub fn allowed_addresses_schema() -> utoipa::openapi::schema::Array {
    let item = string(false)
        .max_length(Some(ALLOWED_ADDRESS_MAX_CHARS))
        .pattern(Some(ALLOWED_ADDRESS))
        .build();
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(item)
        .max_items(Some(MAX_ALLOWED_ADDRESSES))
        .description(Some(
            "Addresses or CIDR networks the token may be used from (at most 64); absent or \
             empty: anywhere. An entry that is not an address or network, or that has \
             address bits set past its prefix, is 422 `invalid_allowed_addresses`.",
        ))
        .examples([serde_json::json!([
            "10.1.0.0/16",
            "2001:db8::/32",
            "192.0.2.7"
        ])])
        .build()
}

/// An integer from `min` to `max`; null allowed when `nullable`.
pub fn integer_schema(min: i64, max: i64, nullable: bool, description: &str) -> Object {
    let kind = if nullable {
        SchemaType::from_iter([Type::Integer, Type::Null])
    } else {
        SchemaType::Type(Type::Integer)
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .description(Some(description))
        .build()
}

pub fn per_page_schema() -> Object {
    integer_schema(1, PER_PAGE_MAX, true, "1 to 200; 50 by default.")
}

pub fn page_schema() -> Object {
    integer_schema(1, i64::MAX, true, "From 1; 1 by default.")
}

pub fn outcomes_schema() -> Object {
    integer_schema(
        1,
        OUTCOMES_MAX,
        true,
        "Outcomes listed, newest first: 1 to 500, 50 by default.",
    )
}

pub fn days_before_schema() -> Object {
    integer_schema(
        DAYS_BEFORE_MIN,
        DAYS_BEFORE_MAX,
        true,
        "Tokens expiring within this many days get their e-mail: 1 to 365.",
    )
}

pub fn smtp_name_schema_required() -> Object {
    smtp_name_schema(false)
}

pub fn host_schema_required() -> Object {
    host_schema(false)
}

pub fn port_schema_required() -> Object {
    integer_schema(
        1,
        65_535,
        false,
        "1 to 65535: 25 plain, 465 implicit TLS, 587 STARTTLS.",
    )
}

pub fn port_schema() -> Object {
    integer_schema(
        1,
        65_535,
        true,
        "1 to 65535: 25 plain, 465 implicit TLS, 587 STARTTLS.",
    )
}

#[cfg(test)]
mod tests;
