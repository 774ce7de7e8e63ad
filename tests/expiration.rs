//! Expiration choices made with the command line, on SQLite and PostgreSQL: a token
//! created with `--expires 30d` expires exactly 30 × 86,400 s after its creation, `1y`
//! exactly 365 days after, `never` not at all. (The API's side is in `tests/api.rs`,
//! `expiration_choices_last_exactly_their_length`.)

#[macro_use]
mod common;

use common::*;
use serde_json::Value;

on_both_backends!(expiration_choices_on_the_command_line_last_exactly_their_length);

const DAY: i64 = 86_400;

fn instant(value: &Value) -> i64 {
    humantime::parse_rfc3339(value.as_str().expect("an RFC 3339 instant"))
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn cli_json(config: &std::path::Path, args: &[&str]) -> Value {
    let (code, stdout, stderr) = run_cli(config, args).await;
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(stdout.trim()).expect("one JSON value on stdout")
}

async fn expiration_choices_on_the_command_line_last_exactly_their_length(db: TestDb) {
    let config = config_file(&db, "http://127.0.0.1:9", "127.0.0.1:0");
    first_start(&config).await;
    let choices = [
        ("7d", Some(7 * DAY)),
        ("30d", Some(30 * DAY)),
        ("45d", Some(45 * DAY)),
        ("60d", Some(60 * DAY)),
        ("1y", Some(365 * DAY)),
        ("never", None),
    ];
    for (choice, lifetime) in choices {
        let before = patgate::core::time::now();
        let made = cli_json(
            &config,
            &[
                "token",
                "create",
                "--user",
                "alice",
                "--name",
                choice,
                "--expires",
                choice,
                "--json",
            ],
        )
        .await;
        let after = patgate::core::time::now();
        let created = instant(&made["created_at"]);
        assert!(
            (before..=after).contains(&created),
            "{choice}: created at {created}, not between {before} and {after}"
        );
        match lifetime {
            Some(seconds) => assert_eq!(
                instant(&made["expires_at"]) - created,
                seconds,
                "--expires {choice}"
            ),
            None => assert_eq!(made["expires_at"], Value::Null, "--expires never"),
        }
        // What was stored is what was printed.
        let listed = cli_json(&config, &["token", "list", "--user", "alice", "--json"]).await;
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == made["id"])
            .expect("the new token is listed")
            .clone();
        assert_eq!(row["created_at"], made["created_at"], "{choice}");
        assert_eq!(row["expires_at"], made["expires_at"], "{choice}");
    }
}
