//! The top-level keys: the listeners and their TLS, workers, and what clients are believed.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::optional_path;
use super::{ConfigError, IpNet};

/// Request headers with `_` in their name: a downstream that reads `_` as `-` would
/// take `X_Deploy_User` for `X-Deploy-User`. Look-alikes of the headers the gateway
/// itself reads or sets are dropped whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Forwarded as they are.
    Forward,
    /// Removed, as nginx does by default.
    Drop,
    /// The request is refused with 400.
    Refuse,
}

/// Personal access tokens of Deploy's own (Deploy 25.3 and later), sent as the
/// gateway's are but without its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployTokens {
    /// Forwarded untouched: Deploy judges them.
    Forward,
    /// Refused (`deploy_token_refused`): for a Deploy older than 25.3, or an
    /// organisation that wants only the gateway's tokens.
    Refuse,
}

/// The gateway's own certificate and key, for serving https on `listen`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub(super) fn default_underscores() -> String {
    "forward".into()
}

pub(super) fn default_grace() -> String {
    "30s".into()
}

pub(super) fn default_delay() -> String {
    "0s".into()
}

/// `shutdown_delay`: readiness is 503 this long before the listeners close.
pub(super) fn shutdown_delay(text: &str) -> Result<std::time::Duration, ConfigError> {
    let delay = super::values::duration("shutdown_delay", text)?;
    if delay > std::time::Duration::from_secs(300) {
        return Err(ConfigError::key(
            "shutdown_delay",
            text,
            "at most 5m; a few health-check intervals of the load balancer, like 5s, are enough",
        ));
    }
    Ok(delay)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
}

impl RawTls {
    pub(super) fn validate(self) -> Result<Option<TlsFiles>, ConfigError> {
        match (
            optional_path(&self.cert_file),
            optional_path(&self.key_file),
        ) {
            (None, None) => Ok(None),
            (Some(cert_file), Some(key_file)) => Ok(Some(TlsFiles {
                cert_file,
                key_file,
            })),
            _ => Err(ConfigError(
                "tls: set both tls.cert_file and tls.key_file, or neither".into(),
            )),
        }
    }
}

/// `listen` and `admin_listen`, which may not share a port.
pub(super) fn addresses(
    listen: &str,
    admin_listen: &str,
) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let main = socket_address("listen", listen)?;
    let admin = match admin_listen.trim() {
        "" => None,
        text => Some(socket_address("admin_listen", text)?),
    };
    if admin.is_some_and(|admin| admin.port() == main.port() && admin.port() != 0) {
        return Err(ConfigError::key(
            "admin_listen",
            admin_listen,
            "uses the port of listen; give the admin listener its own port, like 127.0.0.1:4517",
        ));
    }
    Ok((main, admin))
}

/// An address to listen on: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (resolved now; the
/// first address the name resolves to is used).
fn socket_address(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    let fix = "write HOST:PORT like 0.0.0.0:4516, [::]:4516 or localhost:4516";
    if let Ok(address) = text.trim().parse() {
        return Ok(address);
    }
    if !text.contains(':') {
        return Err(ConfigError::key(key, text, format!("no port; {fix}")));
    }
    use std::net::ToSocketAddrs;
    match text.trim().to_socket_addrs() {
        Ok(mut addresses) => addresses.next().ok_or_else(|| {
            ConfigError::key(key, text, format!("the name resolves to no address; {fix}"))
        }),
        Err(e) => Err(ConfigError::key(
            key,
            text,
            format!("not an address ({e}); {fix}"),
        )),
    }
}

/// `workers`, where 0 means one per CPU.
pub(super) fn workers(count: usize) -> Result<usize, ConfigError> {
    if count > 256 {
        return Err(ConfigError::key(
            "workers",
            &count.to_string(),
            "at most 256; 0 means one per CPU",
        ));
    }
    Ok(match count {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    })
}

pub(super) fn trusted_proxies(texts: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    texts
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|problem| ConfigError::key("trusted_proxies", text, problem))
        })
        .collect()
}

pub(super) fn underscore_headers(text: &str) -> Result<UnderscoreHeaders, ConfigError> {
    match text {
        "forward" => Ok(UnderscoreHeaders::Forward),
        "drop" => Ok(UnderscoreHeaders::Drop),
        "refuse" => Ok(UnderscoreHeaders::Refuse),
        other => Err(ConfigError::key(
            "underscore_headers",
            other,
            "use forward, drop or refuse",
        )),
    }
}

pub(super) fn deploy_tokens(text: &str) -> Result<DeployTokens, ConfigError> {
    match text {
        "forward" => Ok(DeployTokens::Forward),
        "refuse" => Ok(DeployTokens::Refuse),
        other => Err(ConfigError::key(
            "deploy_tokens",
            other,
            "use forward (Deploy judges its own tokens) or refuse (only the gateway's tokens)",
        )),
    }
}

pub(super) fn default_deploy_tokens() -> String {
    "forward".into()
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn listen_takes_host_names_and_ipv6() {
        let cfg =
            Config::from_yaml(MINIMAL, &env(&[("PATGATE_LISTEN", "localhost:4599")])).unwrap();
        assert!(cfg.listen.ip().is_loopback() && cfg.listen.port() == 4599);
        let cfg = Config::from_yaml(MINIMAL, &env(&[("PATGATE_LISTEN", "[::]:4599")])).unwrap();
        assert!(cfg.listen.is_ipv6());
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen \"localhost\": no port"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_networks_from_yaml_or_the_environment() {
        let yaml =
            format!("{MINIMAL}trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.1]\n");
        let cfg = Config::from_yaml(&yaml, &env(&[])).unwrap();
        assert_eq!(cfg.trusted_proxies.len(), 3);
        assert!(cfg.trusted_proxies[1].contains("2001:db8::7".parse().unwrap()));
        let cfg = Config::from_yaml(
            MINIMAL,
            &env(&[("PATGATE_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8")]),
        )
        .unwrap();
        assert_eq!(cfg.trusted_proxies.len(), 2);
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_TRUSTED_PROXIES", "10.1.2.3/8")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trusted_proxies \"10.1.2.3/8\"") && err.contains("write 10.0.0.0/8"),
            "{err}"
        );
    }

    #[test]
    fn deploy_tokens_are_forwarded_unless_refused() {
        use crate::config::DeployTokens;
        let cfg = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(cfg.deploy_tokens, DeployTokens::Forward);
        let cfg =
            Config::from_yaml(&format!("{MINIMAL}deploy_tokens: refuse\n"), &env(&[])).unwrap();
        assert_eq!(cfg.deploy_tokens, DeployTokens::Refuse);
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_DEPLOY_TOKENS", "drop")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("deploy_tokens \"drop\"") && err.contains("use forward"),
            "{err}"
        );
    }

    #[test]
    fn shutdown_delay_is_off_unless_set_and_bounded() {
        use std::time::Duration;
        let cfg = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(cfg.shutdown_delay, Duration::ZERO);
        let cfg = Config::from_yaml(MINIMAL, &env(&[("PATGATE_SHUTDOWN_DELAY", "5s")])).unwrap();
        assert_eq!(cfg.shutdown_delay, Duration::from_secs(5));
        for (value, problem) in [("10m", "at most 5m"), ("soon", "write a duration")] {
            let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_SHUTDOWN_DELAY", value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("shutdown_delay \"{value}\"")) && err.contains(problem),
                "{err}"
            );
        }
    }

    #[test]
    fn underscore_headers_is_one_of_three() {
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_UNDERSCORE_HEADERS", "strip")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("underscore_headers \"strip\""), "{err}");
    }
}
