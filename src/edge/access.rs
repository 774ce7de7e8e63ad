//! The access log (`log.access: true`): one structured line per request, at info level
//! under the target `access`, from the fast path and the general path alike. It names
//! the method, the path without its query (a query may carry secrets), the status, the
//! user or `-`, the kind of credential, the duration and the request id; never a
//! header or a token.

use std::time::Instant;

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

/// What the request path learnt of a request for its access line.
#[derive(Debug, Default)]
pub struct Note {
    pub user: Option<String>,
    pub kind: Kind,
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
    tracing::info!(
        target: "access",
        method,
        path,
        status,
        user = note.user.as_deref().unwrap_or("-"),
        credential = note.kind.as_str(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id,
        "request"
    );
}
