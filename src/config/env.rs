//! The `PATGATE_<SECTION>__<KEY>` overrides: applying them, and naming a misspelt one.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::{ConfigError, Raw, CONFIG_ENV};

/// Prefix of the variables that override single config keys.
const OVERRIDE_PREFIX: &str = "PATGATE_";

/// One `PATGATE_…` environment variable.
#[derive(Clone)]
pub(super) struct Override {
    var: String,
    /// The part after the prefix: `UPSTREAM__URL`.
    path: String,
    value: String,
}

impl Override {
    /// The variables of `env` that override keys: `PATGATE_…`, except `PATGATE_CONFIG`
    /// and the `PATGATE_TEST_…` that tests and benchmarks read.
    pub(super) fn all_in(env: &BTreeMap<String, String>) -> Vec<Override> {
        env.iter()
            .filter_map(|(name, value)| {
                let path = name.strip_prefix(OVERRIDE_PREFIX)?;
                (name != CONFIG_ENV && !path.starts_with("TEST_")).then(|| Override {
                    var: name.clone(),
                    path: path.to_string(),
                    value: value.clone(),
                })
            })
            .collect()
    }
}

type DeError = serde_path_to_error::Error<serde_yaml_ng::Error>;

/// The file's tree with the overrides applied, deserialized; the outer error is an
/// override that cannot be applied at all.
pub(super) fn deserialize(
    file: &Value,
    overrides: &[Override],
) -> Result<(Result<Raw, DeError>, Value), ConfigError> {
    let mut tree = file.clone();
    for o in overrides {
        apply_override(&mut tree, &o.var, &o.path, &o.value)?;
    }
    Ok((serde_path_to_error::deserialize(tree.clone()), tree))
}

/// The name in serde's "unknown field `name`, expected …".
fn unknown_field(error: &DeError) -> Option<String> {
    let text = error.inner().to_string();
    let rest = text.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Words an operator's failed deserialization, naming the environment variable when one
/// brought in the unknown key, with the spelling it probably meant.
pub(super) fn explain(error: DeError, file: &Value, overrides: &[Override]) -> ConfigError {
    if let Some(field) = unknown_field(&error) {
        let culprit = overrides.iter().position(|o| {
            o.path
                .rsplit("__")
                .next()
                .is_some_and(|last| last.eq_ignore_ascii_case(&field))
        });
        if let Some(i) = culprit {
            let var = &overrides[i].var;
            let key = overrides[i]
                .path
                .split("__")
                .collect::<Vec<_>>()
                .join(".")
                .to_ascii_lowercase();
            let hint =
                "sections and keys are separated by two underscores: PATGATE_<SECTION>__<KEY>";
            return match suggest(file, overrides, i) {
                Some(better) => ConfigError(format!(
                    "environment variable {var}: no setting {key}; did you mean {OVERRIDE_PREFIX}{better}? ({hint})"
                )),
                None => ConfigError(format!(
                    "environment variable {var}: no setting {key} ({hint}); see the configuration reference in docs/configuration.md"
                )),
            };
        }
    }
    let key = error.path().to_string();
    ConfigError(format!(
        "key {key}: {}; see the configuration reference in docs/configuration.md",
        error.into_inner()
    ))
}

/// Another spelling of override `i`, with some single underscores doubled, that names
/// a real setting.
fn suggest(file: &Value, overrides: &[Override], i: usize) -> Option<String> {
    let path = &overrides[i].path;
    let bytes = path.as_bytes();
    // Single underscores: not next to another one.
    let singles: Vec<usize> = (0..bytes.len())
        .filter(|&j| {
            bytes[j] == b'_' && bytes.get(j + 1) != Some(&b'_') && (j == 0 || bytes[j - 1] != b'_')
        })
        .collect();
    if singles.is_empty() || singles.len() > 8 {
        return None;
    }
    // Fewest doubled underscores first.
    let mut masks: Vec<u32> = (1..1u32 << singles.len()).collect();
    masks.sort_by_key(|m| m.count_ones());
    for mask in masks {
        let mut candidate = String::with_capacity(path.len() + singles.len());
        for (j, c) in path.char_indices() {
            candidate.push(c);
            if let Some(k) = singles.iter().position(|&s| s == j) {
                if mask & (1 << k) != 0 {
                    candidate.push('_');
                }
            }
        }
        let mut trial = overrides.to_vec();
        trial[i].path = candidate.clone();
        let last = candidate
            .rsplit("__")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match deserialize(file, &trial) {
            Ok((Ok(_), _)) => return Some(candidate),
            Ok((Err(e), _)) if unknown_field(&e).is_none_or(|f| f != last) => {
                return Some(candidate)
            }
            _ => {}
        }
    }
    None
}

/// Sets one key from `PATGATE_A__B__C=value`, creating sections as needed.
fn apply_override(tree: &mut Value, var: &str, path: &str, value: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ConfigError(format!(
            "environment variable {var}: empty key segment; write PATGATE_<SECTION>__<KEY>"
        )));
    }
    let mut node = tree;
    for key in &keys {
        if !node.is_mapping() {
            return Err(ConfigError(format!(
                "environment variable {var}: {key} is not inside a section"
            )));
        }
        let map = node.as_mapping_mut().expect("checked above");
        node = map
            .entry(Value::String(key.clone()))
            .or_insert(Value::Mapping(Default::default()));
    }
    // Always text: numeric keys parse it themselves, so a password of digits stays text.
    *node = Value::String(value.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, MINIMAL};
    use crate::config::{Config, IdentityMode};

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
}
