//! The `exchange:` section: how CI identity tokens are checked when a pipeline trades
//! one for a short-lived gateway token (`POST /patgate/api/v1/token-exchange`). The
//! trust policies themselves are the administrators', kept in the database.

use std::time::Duration;

use serde::Deserialize;

use super::values::duration;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Exchange {
    /// How far `exp`, `nbf` and `iat` may be off the gateway's clock.
    pub clock_skew: Duration,
    /// An issuer's key set older than this is not used: when it cannot be fetched again,
    /// exchanges for that issuer are refused (503) rather than checked against old keys.
    pub jwks_max_age: Duration,
    /// A key set is fetched again after this long, or sooner when a token names a key
    /// it does not hold, but never more often than `jwks_min_refresh`.
    pub jwks_refresh: Duration,
    pub jwks_min_refresh: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawExchange {
    clock_skew: String,
    jwks_max_age: String,
    jwks_refresh: String,
    jwks_min_refresh: String,
}

impl Default for RawExchange {
    fn default() -> Self {
        RawExchange {
            clock_skew: "60s".into(),
            jwks_max_age: "1h".into(),
            jwks_refresh: "5m".into(),
            jwks_min_refresh: "1m".into(),
        }
    }
}

impl RawExchange {
    pub(super) fn validate(self) -> Result<Exchange, ConfigError> {
        let clock_skew = duration("exchange.clock_skew", &self.clock_skew)?;
        if clock_skew > Duration::from_secs(300) {
            return Err(ConfigError::key(
                "exchange.clock_skew",
                &self.clock_skew,
                "at most 5m: a wider window keeps expired identity tokens usable",
            ));
        }
        let jwks_max_age = duration("exchange.jwks_max_age", &self.jwks_max_age)?;
        let jwks_refresh = duration("exchange.jwks_refresh", &self.jwks_refresh)?;
        let jwks_min_refresh = duration("exchange.jwks_min_refresh", &self.jwks_min_refresh)?;
        if jwks_refresh > jwks_max_age {
            return Err(ConfigError::key(
                "exchange.jwks_refresh",
                &self.jwks_refresh,
                "must not be longer than exchange.jwks_max_age",
            ));
        }
        Ok(Exchange {
            clock_skew,
            jwks_max_age,
            jwks_refresh,
            jwks_min_refresh,
        })
    }
}
