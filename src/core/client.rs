//! The client connection as the gateway saw it, handed to the gateway's own routes.

use std::net::IpAddr;

/// The client connection, as the gateway saw it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// Whether the connection to the gateway is TLS.
    pub tls: bool,
    /// Whether the client's side is https: TLS here, or a trusted proxy in front that
    /// terminates it says so. Cookies are `Secure` and origins compared by it.
    pub https: bool,
    /// The host the client addressed (a trusted proxy's `X-Forwarded-Host`, else `Host`).
    pub host: Option<String>,
    pub request_id: String,
}

impl ClientInfo {
    /// `https://host` or `http://host`, when the host is known.
    pub fn origin(&self) -> Option<String> {
        let scheme = if self.https { "https" } else { "http" };
        self.host.as_ref().map(|host| format!("{scheme}://{host}"))
    }
}
