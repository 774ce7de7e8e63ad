//! A real SMTP server for the e-mail tests: aiosmtpd (tests/smtp/server.py, installed by
//! scripts/smtp-setup.sh) on a free loopback port, plain, STARTTLS or implicit TLS, with
//! or without AUTH, and the messages it accepted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// How the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    StartTls,
    /// TLS from the first byte (SMTPS, port-465 style).
    Tls,
}

/// The credentials the server accepts when started with AUTH.
pub const USER: &str = "mailer";
pub const PASSWORD: &str = "mail-pw-42";

/// A running aiosmtpd; killed when dropped.
pub struct SmtpServer {
    pub port: u16,
    child: tokio::process::Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The whole message as sent (headers and MIME parts).
    pub data: String,
}

impl Received {
    /// The message with quoted-printable soft line breaks and `=XX` escapes undone
    /// (lettre encodes long or non-ASCII bodies that way), for substring checks.
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "").replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The interpreter of the environment scripts/smtp-setup.sh makes.
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/smtp/.venv/bin/python");
    if !python.exists() {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/smtp-setup.sh"))
            .status()
            .expect("bash runs scripts/smtp-setup.sh");
        assert!(status.success(), "scripts/smtp-setup.sh failed");
    }
    python
}

/// A self-signed certificate for localhost / 127.0.0.1, made with openssl.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("smtp.crt");
    let key = dir.join("smtp.key");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    (cert, key)
}

impl SmtpServer {
    pub async fn start(mode: Mode, auth: bool) -> SmtpServer {
        Self::start_with_delay(mode, auth, Duration::ZERO).await
    }

    /// A server that records each message at once but answers `250` only `delay`
    /// later, like a slow relay: a sender killed meanwhile never learns it went out.
    pub async fn start_with_delay(mode: Mode, auth: bool, delay: Duration) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut command = tokio::process::Command::new(python());
        command.arg(script).arg("--out").arg(&out);
        command.arg("--mode").arg(match mode {
            Mode::Plain => "plain",
            Mode::StartTls => "starttls",
            Mode::Tls => "tls",
        });
        if mode != Mode::Plain {
            let (cert, key) = self_signed(dir.path());
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if !delay.is_zero() {
            command.arg("--delay").arg(delay.as_secs_f64().to_string());
        }
        if auth {
            command.arg("--auth").arg(format!("{USER}:{PASSWORD}"));
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the test SMTP server starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the test SMTP server says READY within 20 s")
            .unwrap()
            .expect("a READY line");
        let port: u16 = ready
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from the SMTP server: {ready}"));
        SmtpServer {
            port,
            child,
            out,
            _dir: dir,
        }
    }

    /// Messages accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                Received {
                    mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: v["data"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// Makes an SMTP server item `name` for this server, as an administrator of the
    /// gateway at `base` (`http://host:port`); returns the item's id.
    pub async fn item_at(&self, base: &str, name: &str) -> String {
        let made = super::api::as_user(
            "POST",
            &format!("{base}/patgate/api/v1/smtp-servers"),
            "admin",
            "admin-pw",
            Some(
                &serde_json::json!({"name": name, "host": "127.0.0.1", "port": self.port,
                "from_address": "Deploy <deploy@example.com>"}),
            ),
        )
        .await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        made.json()["id"].as_str().unwrap().to_string()
    }

    /// Stops the server; the port then refuses connections.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
