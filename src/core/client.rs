//! The client connection as the gateway saw it, handed to the gateway's own routes.

use std::net::IpAddr;

/// The client connection, as the gateway saw it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub tls: bool,
    pub request_id: String,
}
