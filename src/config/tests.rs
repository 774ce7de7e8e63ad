//! Tests of loading as a whole, and the minimal configuration the other tests start from.

use super::*;

/// A configuration that loads; tests change it key by key through `env`.
pub(super) const MINIMAL: &str = "listen: 127.0.0.1:4516\nupstream:\n  url: http://127.0.0.1:14516\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: sqlite://x.db\n";

/// An environment of the given variables, as `Config::from_yaml` takes it.
pub(super) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_overrides_nested_keys() {
    let cfg = Config::from_yaml(
        MINIMAL,
        &env(&[
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
            ("PATGATE_DATABASE__URL", "postgres://u:pw@db/x"),
            ("PATGATE_CACHE__MAX_TOKENS", "7"),
            ("PATGATE_LISTEN", "0.0.0.0:9"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.upstream.identity.mode, IdentityMode::Jwt);
    assert!(cfg.database.is_postgres());
    assert_eq!(cfg.cache.max_tokens, 7);
    assert_eq!(cfg.listen.port(), 9);
}

#[test]
fn text_keys_keep_digits_as_text_and_numbers_parse() {
    let cfg = Config::from_yaml(
        MINIMAL,
        &env(&[
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "123456"),
            ("PATGATE_LIMITS__FAILURES_PER_SECOND", "2.5"),
        ]),
    )
    .unwrap();
    let (_, secret) = cfg.upstream.identity.shared_secret.unwrap();
    assert_eq!(secret, "123456");
    assert_eq!(cfg.limits.failures_per_second, 2.5);
    let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_CACHE__MAX_TOKENS", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cache.max_tokens") && err.contains("lots"),
        "{err}"
    );
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_UPSTREAM__URLL", "http://x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("urll"), "{err}");
}

#[test]
fn the_shipped_gateway_yaml_starts_as_it_is() {
    let cfg = Config::from_yaml(include_str!("../../gateway.yaml"), &env(&[])).unwrap();
    assert!(cfg.trusted_proxies.is_empty());
    assert_eq!(cfg.underscore_headers, UnderscoreHeaders::Forward);
}

#[test]
fn a_variable_with_one_underscore_is_named_with_its_likely_spelling() {
    let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_UPSTREAM_URL", "http://x:1")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable PATGATE_UPSTREAM_URL"),
        "{err}"
    );
    assert!(err.contains("did you mean PATGATE_UPSTREAM__URL?"), "{err}");
    let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_CACHE_MAX_TOKENS", "5")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did you mean PATGATE_CACHE__MAX_TOKENS?"),
        "{err}"
    );
    let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_NO_SUCH_THING", "5")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable PATGATE_NO_SUCH_THING: no setting no_such_thing"),
        "{err}"
    );
}

#[test]
fn relative_paths_resolve_against_the_configuration_folder() {
    let mut cfg = Config::from_yaml(
        MINIMAL,
        &env(&[
            ("PATGATE_DATABASE__URL", "sqlite://data/p.db?mode=rwc"),
            ("PATGATE_TLS__CERT_FILE", "tls/cert.pem"),
            ("PATGATE_TLS__KEY_FILE", "/abs/key.pem"),
        ]),
    )
    .unwrap();
    cfg.resolve_paths(Path::new("/etc/patgate"));
    assert_eq!(cfg.database.url, "sqlite:///etc/patgate/data/p.db?mode=rwc");
    assert_eq!(
        cfg.secrets.token_key_file,
        Path::new("/etc/patgate/data/token-hmac.key")
    );
    let tls = cfg.tls.unwrap();
    assert_eq!(tls.cert_file, Path::new("/etc/patgate/tls/cert.pem"));
    assert_eq!(tls.key_file, Path::new("/abs/key.pem"));
}
