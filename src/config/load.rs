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
            Ok(raw) => raw.validate(),
            Err(e) => Err(explain(e, &file, &overrides)),
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
