//! Tests of loading as a whole, and the minimal configuration the other tests start from.

use std::collections::BTreeMap;

use super::{Config, UnderscoreHeaders};

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
fn the_shipped_gateway_yaml_starts_as_it_is() {
    let cfg = Config::from_yaml(include_str!("../../gateway.yaml"), &env(&[])).unwrap();
    assert!(cfg.trusted_proxies.is_empty());
    assert_eq!(cfg.underscore_headers, UnderscoreHeaders::Forward);
}
