//! For the crash tests: kill moments from a seeded generator (the seed is printed, and
//! `PATGATE_TEST_CRASH_SEED` replays it), the number of kills (`PATGATE_TEST_CRASH_KILLS`),
//! `kill -9` of the real binary, and a client that reports a refused or cut connection
//! instead of panicking (a request in flight at the kill).

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Answer, Process};

/// Replays a failing run: the seed it printed.
pub const SEED_ENV: &str = "PATGATE_TEST_CRASH_SEED";
/// How many kills each case makes (its default when unset).
pub const KILLS_ENV: &str = "PATGATE_TEST_CRASH_KILLS";

/// The kills a case makes: `PATGATE_TEST_CRASH_KILLS`, else `default`.
pub fn kills(default: usize) -> usize {
    std::env::var(KILLS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// A small seeded generator (splitmix64): the same seed, the same kill moments.
pub struct Rng {
    pub seed: u64,
    state: u64,
}

impl Rng {
    /// Seeded from `PATGATE_TEST_CRASH_SEED`, else at random; prints the seed, so that a
    /// failure's output says how to replay it.
    pub fn new(case: &str) -> Rng {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                let mut b = [0u8; 8];
                getrandom::getrandom(&mut b).unwrap();
                u64::from_le_bytes(b)
            });
        eprintln!("{case}: kill moments from seed {seed} (replay with {SEED_ENV}={seed})");
        Rng { seed, state: seed }
    }

    /// A generator of its own, from a seed another one drew.
    pub fn new_seeded(seed: u64) -> Rng {
        Rng { seed, state: seed }
    }

    pub fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A whole number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A moment in `[from, to)`.
    pub fn between(&mut self, from: Duration, to: Duration) -> Duration {
        let span = (to - from).as_millis() as u64;
        from + Duration::from_millis(self.below(span))
    }
}

/// `kill -9`: no shutdown, no flush, no last write; waits until the process is gone.
pub async fn sigkill(mut process: Process) {
    let pid = process.child.id().expect("the gateway is still running");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
    let _ = tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .expect("the gateway died after kill -9");
}

/// One request on a fresh connection; `None` when the connection is refused or cut
/// before a whole answer came (the process died), or nothing came within 10 s.
pub async fn try_call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Option<Answer> {
    let uri: http::Uri = url.parse().ok()?;
    let attempt = async {
        let stream = TcpStream::connect((uri.host()?, uri.port_u16()?))
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", uri.authority()?.as_str());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(value) => {
                req = req.header("content-type", "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let response = sender
            .send_request(req.body(Full::new(bytes)).ok()?)
            .await
            .ok()?;
        let (parts, body) = response.into_parts();
        Some(Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.ok()?.to_bytes(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}
