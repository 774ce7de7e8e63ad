//! The access log (`log.access: true`): one structured line per request, at info level
//! under the target `access`, from the fast path and the general path alike (JSON lines
//! with `log.json: true`). It names the request id, the client address, the method,
//! the path without its query (a query may carry secrets), the status, the route
//! class, the kind of credential, for a token its id, owner and scope, the refusal code
//! when refused, and the durations; never a header, a token, a password or a cookie.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::metrics::Route;

/// What kind of credential a request presented, as the access log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// None that the gateway reads (passed through to Deploy as it is).
    #[default]
    None,
    /// A personal access token of the gateway's.
    Token,
    /// A personal access token of Deploy's own, forwarded for Deploy to judge.
    DeployToken,
    /// A credential the gateway could not read.
    Unreadable,
    /// A request to the gateway's own routes.
    Gateway,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::None => "-",
            Kind::Token => "token",
            Kind::DeployToken => "deploy_token",
            Kind::Unreadable => "unreadable",
            Kind::Gateway => "patgate",
        }
    }
}

/// What the request path learnt of a request for its access line and metrics.
#[derive(Debug, Default)]
pub struct Note {
    /// The token's owner.
    pub user: Option<String>,
    pub kind: Kind,
    pub route: Route,
    pub token_id: Option<String>,
    pub scope: Option<&'static str>,
    /// The error code of a refusal.
    pub refusal: Option<&'static str>,
    /// The client: the peer, or behind a trusted proxy the address it forwarded.
    pub client: Option<IpAddr>,
    /// Time from sending to Deploy until its response head arrived.
    pub upstream: Option<Duration>,
}

/// Writes one access line.
pub fn record(
    method: &str,
    path: &str,
    status: u16,
    note: &Note,
    started: Instant,
    request_id: &str,
) {
    let client = note.client.map(|ip| ip.to_string());
    tracing::info!(
        target: "access",
        request_id,
        client = client.as_deref().unwrap_or("-"),
        method,
        path,
        status,
        route = note.route.as_str(),
        user = note.user.as_deref().unwrap_or("-"),
        credential = note.kind.as_str(),
        token_id = note.token_id.as_deref().unwrap_or("-"),
        scope = note.scope.unwrap_or("-"),
        refusal = note.refusal.unwrap_or("-"),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        upstream_ms = note.upstream.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        "request"
    );
}
