//! Talking to an SMTP server with lettre: the item's JavaMail properties turned into a
//! transport (plain, STARTTLS or implicit TLS; AUTH; timeouts; trusted hosts), and the
//! server's failures turned into words an administrator can act on. A password never
//! crosses the network in clear unless the item says so (`patgate.smtp.auth.plaintext`),
//! and what a peer sent is repeated only when it is an SMTP reply.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::secret::Password;
use crate::store::SmtpServerRecord;

/// Lets an item authenticate over a connection without TLS (a relay on a trusted
/// network); the gateway's own property, beside JavaMail's.
pub const PLAINTEXT_AUTH: &str = "patgate.smtp.auth.plaintext";

/// The properties that decide how the connection is protected: changing one of them (or
/// the host or port) means the password must be given again.
pub const TRANSPORT_PROPERTIES: [&str; 6] = [
    "mail.smtp.starttls.enable",
    "mail.smtp.starttls.required",
    "mail.smtp.ssl.enable",
    "mail.smtp.ssl.trust",
    "mail.smtp.ssl.checkserveridentity",
    PLAINTEXT_AUTH,
];

/// The JavaMail properties the gateway honours; every other key is kept on the item
/// and reported back as ignored.
pub const UNDERSTOOD: [&str; 11] = [
    "mail.smtp.starttls.enable",
    "mail.smtp.starttls.required",
    "mail.smtp.ssl.enable",
    "mail.smtp.ssl.trust",
    "mail.smtp.ssl.checkserveridentity",
    "mail.smtp.auth",
    "mail.smtp.auth.mechanisms",
    "mail.smtp.connectiontimeout",
    "mail.smtp.timeout",
    "mail.smtp.localhost",
    PLAINTEXT_AUTH,
];

/// How to connect, read from JavaMail properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub starttls_enable: bool,
    pub starttls_required: bool,
    /// Implicit TLS from the first byte (SMTPS, port 465).
    pub ssl_enable: bool,
    /// `None`: authenticate when a username is set.
    pub auth: Option<bool>,
    pub mechanisms: Option<Vec<Mechanism>>,
    pub connection_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    /// Hosts whose certificate is accepted without verification; `*` is every host.
    pub ssl_trust: Vec<String>,
    pub check_server_identity: bool,
    /// Name sent in EHLO.
    pub localhost: Option<String>,
    /// The item accepts that its password crosses the network without TLS.
    pub plaintext_auth: bool,
}

impl Properties {
    /// Reads the properties; an understood key with a bad value is an error naming
    /// it. Returns the properties and the keys that were ignored.
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<(Properties, Vec<String>), String> {
        let mut p = Properties {
            check_server_identity: true,
            ..Properties::default()
        };
        let mut ignored = Vec::new();
        for (key, value) in raw {
            let value = value.trim();
            let flag = || match value.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!(
                    "smtp_properties {key}={value:?}: write true or false"
                )),
            };
            let millis = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| (1..=600_000).contains(ms))
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        format!(
                            "smtp_properties {key}={value:?}: write milliseconds between 1 and 600000"
                        )
                    })
            };
            match key.as_str() {
                "mail.smtp.starttls.enable" => p.starttls_enable = flag()?,
                "mail.smtp.starttls.required" => p.starttls_required = flag()?,
                "mail.smtp.ssl.enable" => p.ssl_enable = flag()?,
                "mail.smtp.auth" => p.auth = Some(flag()?),
                PLAINTEXT_AUTH => p.plaintext_auth = flag()?,
                "mail.smtp.ssl.checkserveridentity" => p.check_server_identity = flag()?,
                "mail.smtp.connectiontimeout" => p.connection_timeout = Some(millis()?),
                "mail.smtp.timeout" => p.timeout = Some(millis()?),
                "mail.smtp.ssl.trust" => {
                    p.ssl_trust = value.split_whitespace().map(str::to_string).collect();
                }
                "mail.smtp.localhost" => {
                    p.localhost = (!value.is_empty()).then(|| value.to_string());
                }
                "mail.smtp.auth.mechanisms" => {
                    let mut mechanisms = Vec::new();
                    for name in value.split_whitespace() {
                        mechanisms.push(match name.to_ascii_uppercase().as_str() {
                            "PLAIN" => Mechanism::Plain,
                            "LOGIN" => Mechanism::Login,
                            "XOAUTH2" => Mechanism::Xoauth2,
                            other => {
                                return Err(format!(
                                    "smtp_properties {key}: mechanism {other:?} is not supported; use PLAIN, LOGIN or XOAUTH2"
                                ))
                            }
                        });
                    }
                    p.mechanisms = (!mechanisms.is_empty()).then_some(mechanisms);
                }
                _ => ignored.push(key.clone()),
            }
        }
        if p.ssl_enable && p.starttls_required {
            return Err("smtp_properties: mail.smtp.ssl.enable (TLS from the start, port 465) and mail.smtp.starttls.required (STARTTLS, port 587) exclude each other; keep one".into());
        }
        Ok((p, ignored))
    }

    fn trusts(&self, host: &str) -> bool {
        self.ssl_trust
            .iter()
            .any(|t| t == "*" || t.eq_ignore_ascii_case(host))
    }
}

/// Why a send failed, in the categories an administrator acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The item itself is unusable (bad address, bad property, unreadable password).
    Configuration,
    Authentication,
    Tls,
    ConnectionRefused,
    Timeout,
    /// The server answered with an error (relay denied, mailbox unknown, …).
    Rejected,
    Other,
}

impl FailureKind {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Configuration => "smtp_configuration",
            FailureKind::Authentication => "smtp_authentication_failed",
            FailureKind::Tls => "smtp_tls_failed",
            FailureKind::ConnectionRefused => "smtp_connection_refused",
            FailureKind::Timeout => "smtp_timeout",
            FailureKind::Rejected => "smtp_rejected",
            FailureKind::Other => "smtp_failed",
        }
    }
}

/// A failed send: what kind, and a message naming the server and the fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl SendFailure {
    fn new(kind: FailureKind, message: impl Into<String>) -> SendFailure {
        SendFailure {
            kind,
            message: message.into(),
        }
    }
}

/// One e-mail: subject, HTML body and its text/plain alternative.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// A ready transport for one SMTP server item. No connection is kept between sends.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for messages.
    server: String,
    properties: Properties,
    send_timeout: Duration,
}

impl Mailer {
    /// Builds the transport; `password` is the item's, already opened.
    pub fn new(
        item: &SmtpServerRecord,
        password: Option<&Password>,
        send_timeout: Duration,
    ) -> Result<Mailer, SendFailure> {
        let config = |m: String| SendFailure::new(FailureKind::Configuration, m);
        let (properties, _) = Properties::parse(&item.properties).map_err(config)?;
        let from: Mailbox = item.from_address.parse().map_err(|e| {
            config(format!(
                "from_address {:?} is not an e-mail address ({e})",
                item.from_address
            ))
        })?;
        let tls_parameters = || {
            TlsParameters::builder(item.host.clone())
                .dangerous_accept_invalid_certs(properties.trusts(&item.host))
                .dangerous_accept_invalid_hostnames(!properties.check_server_identity)
                .build_rustls()
                .map_err(|e| config(format!("TLS set-up for {}: {e}", item.host)))
        };
        let username = item.username.as_deref().filter(|u| !u.is_empty());
        let authenticate = properties.auth.unwrap_or(username.is_some());
        // Credentials go over TLS only: opportunistic STARTTLS becomes required, and a
        // plain connection is refused, unless the item allows it explicitly.
        let in_clear_allowed = !authenticate || properties.plaintext_auth;
        let tls = if properties.ssl_enable {
            Tls::Wrapper(tls_parameters()?)
        } else if properties.starttls_required || (properties.starttls_enable && !in_clear_allowed)
        {
            Tls::Required(tls_parameters()?)
        } else if properties.starttls_enable {
            Tls::Opportunistic(tls_parameters()?)
        } else if in_clear_allowed {
            Tls::None
        } else {
            return Err(config(format!(
                "the item authenticates, and its password would cross the network to {}:{} in clear: set mail.smtp.starttls.enable=true and mail.smtp.starttls.required=true (port 587) or mail.smtp.ssl.enable=true (port 465); for a relay on a trusted network, {PLAINTEXT_AUTH}=true allows it",
                item.host, item.port
            )));
        };
        // lettre applies one timeout to connecting and to each reply: the smaller one.
        let timeout = match (properties.connection_timeout, properties.timeout) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(send_timeout),
        }
        .min(send_timeout);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&item.host)
            .port(item.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(name) = &properties.localhost {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        if authenticate {
            let Some(username) = username else {
                return Err(config(
                    "mail.smtp.auth is true but the item has no username; set username and password".into(),
                ));
            };
            builder = builder.credentials(Credentials::new(
                username.to_string(),
                password.map(|p| p.expose().to_string()).unwrap_or_default(),
            ));
            if let Some(mechanisms) = &properties.mechanisms {
                builder = builder.authentication(mechanisms.clone());
            }
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            server: format!("{}:{}", item.host, item.port),
            properties,
            send_timeout,
        })
    }

    /// Sends one e-mail within `send_timeout`.
    /// `mail.to` may list several addresses separated by commas (a service account's
    /// owners): one message to all of them, each in `Bcc`.
    pub async fn send(&self, mail: &Mail) -> Result<(), SendFailure> {
        let mut message = Message::builder().from(self.from.clone());
        let several = mail.to.contains(',');
        for address in mail.to.split(',').map(str::trim) {
            let to: Mailbox = address.parse().map_err(|e| {
                SendFailure::new(
                    FailureKind::Configuration,
                    format!("recipient {address:?} is not an e-mail address ({e})"),
                )
            })?;
            // Several owners do not see each other's addresses.
            message = if several {
                message.bcc(to)
            } else {
                message.to(to)
            };
        }
        let message = message
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| SendFailure::new(FailureKind::Configuration, format!("message: {e}")))?;
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.explain(&e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> SendFailure {
        // A port-465 server waits for a TLS handshake that plain SMTP never starts.
        let hint = if self.server.ends_with(":465") && !self.properties.ssl_enable {
            "; port 465 expects TLS from the start: set mail.smtp.ssl.enable=true"
        } else {
            ""
        };
        SendFailure::new(
            FailureKind::Timeout,
            format!(
                "timeout: the SMTP server {} did not finish the conversation within {}; check host and port, and that no firewall drops the connection{hint}",
                self.server,
                humantime::format_duration(self.send_timeout)
            ),
        )
    }

    /// The server's own failure, with what to check.
    fn explain(&self, e: &lettre::transport::smtp::Error) -> SendFailure {
        let server = &self.server;
        let io_kind = io_error_kind(e);
        if e.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
            return self.timed_out();
        }
        if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
            return SendFailure::new(
                FailureKind::ConnectionRefused,
                format!("connection refused by {server}: no SMTP server listens there; check host and port"),
            );
        }
        if e.is_tls() || is_tls_failure(e) {
            let hint = if self.properties.ssl_enable {
                "check that the port speaks TLS from the start (usually 465)"
            } else {
                "check the port (587 for STARTTLS)"
            };
            return SendFailure::new(
                FailureKind::Tls,
                format!(
                    "TLS handshake with {server} failed: {}; {hint}, and if the server's certificate is not from a public CA, trust it with mail.smtp.ssl.trust",
                    root_cause(e)
                ),
            );
        }
        if let Some(code) = e.status() {
            let code = code.to_string();
            let said = root_cause(e);
            if code == "535" || code == "534" || (code == "454" && said.contains("uth")) {
                return SendFailure::new(
                    FailureKind::Authentication,
                    format!("authentication failed at {server}: the server answered {code} {said}; check username and password (some providers need an application password)"),
                );
            }
            if code == "530" {
                return SendFailure::new(
                    FailureKind::Rejected,
                    format!("{server} answered {code} {said}; it wants STARTTLS or AUTH first: set mail.smtp.starttls.enable=true, or a username and password"),
                );
            }
            return SendFailure::new(
                FailureKind::Rejected,
                format!("{server} refused the message: {code} {said}; check from_address (many providers only accept their own domain) and the recipient"),
            );
        }
        let said = root_cause(e);
        if said.contains("authentication mechanism") || said.contains("No compatible") {
            return SendFailure::new(
                FailureKind::Authentication,
                format!("authentication failed at {server}: {said}; the server offers no AUTH method the gateway can use (over plain text many servers offer none: set mail.smtp.starttls.enable=true)"),
            );
        }
        if e.is_response() {
            // Whatever the peer sent is not an SMTP reply: it is not repeated (the item
            // could point at any service).
            return SendFailure::new(
                FailureKind::Other,
                format!("{server} did not answer like an SMTP server; check host and port, and if it expects TLS from the start (port 465) set mail.smtp.ssl.enable=true"),
            );
        }
        SendFailure::new(
            FailureKind::Other,
            format!("sending through {server} failed: {said}"),
        )
    }
}

/// Whether a TLS library error is in the chain (lettre reports a failed STARTTLS
/// handshake as a network error wrapping it).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error's source() skips the error it wraps: look at that one too.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
        }
        source = err.source();
    }
    false
}

fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// The innermost error's text, where the server's or the TLS library's words are.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn javamail_properties_are_read_and_unknown_ones_reported() {
        let (p, ignored) = Properties::parse(&props(&[
            ("mail.smtp.starttls.enable", "true"),
            ("mail.smtp.auth", "TRUE"),
            ("mail.smtp.connectiontimeout", "5000"),
            ("mail.smtp.ssl.trust", "relay.internal other"),
            ("mail.debug", "true"),
        ]))
        .unwrap();
        assert!(p.starttls_enable && p.auth == Some(true));
        assert_eq!(p.connection_timeout, Some(Duration::from_secs(5)));
        assert!(p.trusts("RELAY.internal") && !p.trusts("elsewhere"));
        assert_eq!(ignored, vec!["mail.debug".to_string()]);
        let (p, ignored) = Properties::parse(&props(&[(PLAINTEXT_AUTH, "true")])).unwrap();
        assert!(p.plaintext_auth && ignored.is_empty());
    }

    #[test]
    fn bad_values_name_the_property() {
        let err = Properties::parse(&props(&[("mail.smtp.auth", "yes")])).unwrap_err();
        assert!(err.contains("mail.smtp.auth"), "{err}");
        let err = Properties::parse(&props(&[("mail.smtp.timeout", "-1")])).unwrap_err();
        assert!(err.contains("mail.smtp.timeout"), "{err}");
    }
}
