use super::*;

/// Reads back a class built by [`class`] as the set of characters it names.
fn members(class: &str) -> Vec<(u32, u32)> {
    let mut chars = class.chars().peekable();
    let one = |chars: &mut std::iter::Peekable<std::str::Chars>| -> u32 {
        let c = chars.next().unwrap();
        if c == '\\' {
            assert_eq!(chars.next(), Some('u'));
            let hex: String = (0..4).map(|_| chars.next().unwrap()).collect();
            u32::from_str_radix(&hex, 16).unwrap()
        } else {
            c as u32
        }
    };
    let mut out = Vec::new();
    while chars.peek().is_some() {
        let from = one(&mut chars);
        let to = if chars.peek() == Some(&'-') {
            chars.next();
            one(&mut chars)
        } else {
            from
        };
        out.push((from, to));
    }
    out
}

#[test]
fn classes_name_exactly_the_characters_of_their_rule() {
    for rule in [token_name_char, username_char, subject_char, smtp_name_char] {
        let refused = members(&class(|c| !rule(c)));
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let listed = refused.iter().any(|(a, b)| (*a..=*b).contains(&(c as u32)));
            assert_eq!(listed, !rule(c), "U+{:04X}", c as u32);
        }
    }
    // The ones a reader would name.
    assert!(!token_name_char('\u{202e}') && !token_name_char('\u{200b}'));
    assert!(!token_name_char('\u{e0001}') && !token_name_char('\u{0}'));
    assert!(token_name_char('é') && token_name_char('🙂'));
}

#[test]
fn names_follow_the_rule_the_document_states() {
    assert!(is_token_name("ci pipeline"));
    assert!(is_token_name(&"x".repeat(100)));
    assert!(!is_token_name(&"x".repeat(101)));
    assert!(!is_token_name(" ci") && !is_token_name("ci ") && !is_token_name(""));
    assert!(!is_token_name("a<b") && !is_token_name("ab\u{202e}"));
    assert!(is_username("  alice ") && !is_username("al:ice") && !is_username(" "));
    assert!(is_subject(" u-1 ") && !is_subject("u\n1"));
    assert!(is_smtp_name("Main SMTP") && !is_smtp_name("a/b") && !is_smtp_name(" a"));
}

#[test]
fn addresses_are_ascii_dot_atoms_at_two_labels_or_more() {
    for good in [
        "a@example.com",
        "first.last+tag@mail.example.co",
        "!#$%&'*+/=?^_`{|}~-@x.io",
        "a@1.2",
    ] {
        assert!(is_email(good), "{good}");
        assert!(is_mailbox(good), "{good}");
    }
    for bad in [
        "a@example",
        ".a@x.com",
        "a.@x.com",
        "a..b@x.com",
        "a@-x.com",
        "a@x-.com",
        "a@x..com",
        "é@x.com",
        "a@é.com",
        " a@x.com",
        "a b@x.com",
        "\"a\"@x.com",
        "a@[1.2.3.4]",
    ] {
        assert!(!is_email(bad), "{bad}");
    }
    assert!(is_email(&format!("{}@x.com", "a".repeat(64))));
    assert!(!is_email(&format!("{}@x.com", "a".repeat(65))));
    assert!(is_mailbox("Deploy <deploy@example.com>"));
    assert!(is_mailbox("Digital.ai Deploy <deploy@example.com>"));
    assert!(!is_mailbox("Deploy<deploy@example.com>"));
    assert!(!is_mailbox(" Deploy <deploy@example.com>"));
    assert!(!is_mailbox("\"Deploy\" <deploy@example.com>"));
}

#[test]
fn every_mailbox_the_rule_allows_is_one_lettre_can_send_to() {
    for mailbox in [
        "Deploy <deploy@example.com>",
        "Digital.ai Deploy-2 <first.last+x@mail.example.com>",
        "a_b <!#$%&'*+/=?^_`{|}~-@x.io>",
        "x@1.2",
    ] {
        assert!(is_mailbox(mailbox));
        assert!(
            mailbox.parse::<lettre::message::Mailbox>().is_ok(),
            "{mailbox}"
        );
    }
}

#[test]
fn grace_is_a_number_and_one_unit_up_to_a_day() {
    assert_eq!(parse_grace("0s"), Some(0));
    assert_eq!(parse_grace("90s"), Some(90));
    assert_eq!(parse_grace("15m"), Some(900));
    assert_eq!(parse_grace("24h"), Some(86_400));
    assert_eq!(parse_grace("86400s"), Some(86_400));
    assert_eq!(parse_grace("1440m"), Some(86_400));
    for bad in [
        "86401s", "1441m", "25h", "01s", "1h 30m", "1 h", "1d", "h", "", " 1h", "1.5h",
    ] {
        assert_eq!(parse_grace(bad), None, "{bad}");
    }
    assert_eq!(
        up_to(86_400),
        "(?:[0-9]|[1-9][0-9]{1}|[1-9][0-9]{2}|[1-9][0-9]{3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)"
    );
    assert_eq!(up_to(24), "(?:[0-9]|1[0-9]{1}|2[0-3]|24)");
}

#[test]
fn instants_are_rfc_3339_without_leap_seconds() {
    assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_instant("2026-01-31T00:00:00Z"), Some(1_769_817_600));
    assert_eq!(
        parse_instant("2026-01-31T09:00:00.123+09:00"),
        Some(1_769_817_600)
    );
    assert_eq!(parse_instant("1969-12-31T23:59:59Z"), Some(-1));
    assert_eq!(parse_instant("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    for bad in [
        "2026-12-31T23:59:60Z",
        "2026-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-01t00:00:00z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00.1234567890Z",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T24:00:00Z",
    ] {
        assert_eq!(parse_instant(bad), None, "{bad}");
    }
}
