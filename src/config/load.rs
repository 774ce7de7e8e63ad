//! Reading a configuration: the file, then its overrides, then its relative paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::env::{deserialize, explain, Override};
use super::{Config, ConfigError, CONFIG_ENV};

impl Config {
    /// Reads `path`, applies the process environment's overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "config file {}: {e}; pass --config PATH or set {CONFIG_ENV}",
                path.display()
            ))
        })?;
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let mut config = Self::from_yaml(&text, &env)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        let file = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_path_buf());
        let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&folder);
        config.source = Some(file);
        Ok(config)
    }

    /// Makes every relative path absolute against `folder` (the configuration file's),
    /// as nginx and systemd do: the CLI run from any directory then uses the same
    /// database and keys as the gateway.
    pub fn resolve_paths(&mut self, folder: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = folder.join(&*path);
            }
        };
        resolve(&mut self.secrets.token_key_file);
        if let Some(pid_file) = &mut self.pid_file {
            resolve(pid_file);
        }
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
        }
        if let Some(ca) = &mut self.upstream.ca_file {
            resolve(ca);
        }
        resolve(&mut self.upstream.identity.jwt.key_file);
        if let Some(ca) = self.sso.as_mut().and_then(|sso| sso.ca_file.as_mut()) {
            resolve(ca);
        }
        if let Some(file) = self.database.sqlite_file() {
            if file.is_relative() {
                let (_, query) = self.database.url.split_once('?').unwrap_or(("", ""));
                let absolute = folder.join(file);
                self.database.url = match query {
                    "" => format!("sqlite://{}", absolute.display()),
                    q => format!("sqlite://{}?{q}", absolute.display()),
                };
            }
        }
    }

    /// Where the configuration came from, for messages.
    pub fn source_text(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => "(no file)".into(),
        }
    }

    /// Parses YAML text with the given environment (only `PATGATE_*` variables count).
    pub fn from_yaml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut file: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError(format!("not valid YAML: {e}")))?;
        if file.is_null() {
            file = Value::Mapping(Default::default());
        }
        let overrides = Override::all_in(env);
        match deserialize(&file, &overrides)? {
            (Ok(raw), tree) => {
                let mut config = raw.validate()?;
                config.written = Written::of(&tree);
                Ok(config)
            }
            (Err(e), _) => Err(explain(e, &file, &overrides)),
        }
    }
}

/// What the file and its overrides said, key by key (`upstream.identity.mode`), as a
/// digest of each value: a reload compares two of these to name the keys that changed,
/// without keeping or printing any value (some are secrets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written(BTreeMap<String, [u8; 32]>);

impl Written {
    fn of(tree: &Value) -> Written {
        fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, [u8; 32]>) {
            match value {
                Value::Mapping(map) if !map.is_empty() => {
                    for (key, value) in map {
                        let key = match key {
                            Value::String(key) => key.clone(),
                            other => serde_yaml_ng::to_string(other).unwrap_or_default(),
                        };
                        let path = if prefix.is_empty() {
                            key
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&path, value, out);
                    }
                }
                leaf => {
                    use sha2::Digest;
                    let text = serde_yaml_ng::to_string(leaf).unwrap_or_default();
                    out.insert(prefix.to_string(), sha2::Sha256::digest(text).into());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk("", tree, &mut out);
        Written(out)
    }

    /// The keys whose value differs between the two, or that only one of them sets.
    pub fn changed(&self, other: &Written) -> Vec<String> {
        let mut keys: Vec<String> = self
            .0
            .iter()
            .filter(|(key, digest)| other.0.get(*key) != Some(digest))
            .map(|(key, _)| key.clone())
            .collect();
        keys.extend(
            other
                .0
                .keys()
                .filter(|key| !self.0.contains_key(*key))
                .cloned(),
        );
        keys.sort();
        keys
    }

    /// This, with `key` as `other` has it (set, changed or removed).
    pub fn take(&mut self, other: &Written, key: &str) {
        match other.0.get(key) {
            Some(digest) => {
                self.0.insert(key.to_string(), *digest);
            }
            None => {
                self.0.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

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
}
