//! A Deploy stand-in that answers with exact bytes and records the exact bytes it
//! received, so that framing and header cases a well-behaved HTTP library would never
//! produce can be tested on the wire.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted Deploy answers to a request: the exact bytes, and whether it
/// closes the connection afterwards.
pub type Script = fn(method: &str, path: &str) -> (Vec<u8>, bool);

/// A Deploy stand-in that answers with exact bytes.
pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Every request received, head and body, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    pub async fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (count, log) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_scripted(stream, script, log.clone()));
            }
        });
        Scripted {
            addr,
            connections,
            heads,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The last request received: its head and body.
    pub fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve_scripted(mut stream: TcpStream, script: Script, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or_default().to_string();
        let path = words.next().unwrap_or_default().to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
        buf.drain(..end + 4 + length);
        heads.lock().unwrap().push(head + &body);
        if path == "/slow" {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (answer, close) = script(&method, &path);
        if stream.write_all(&answer).await.is_err() || close {
            return;
        }
    }
}

/// Sends raw bytes on a new connection, then reads until the gateway closes it.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answers))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    answers
}

/// The two ways to a request: first on its connection (a token request takes the fast
/// path), or behind a gateway route, which puts the connection on the general path.
pub const PATHS: [(&str, &str); 2] = [
    ("fast path", ""),
    (
        "general path",
        "GET /patgate/healthz HTTP/1.1\r\nHost: gw.example\r\n\r\n",
    ),
];

/// Sends `request` after `before` and returns the gateway's answer to `request`.
pub async fn exchange(addr: SocketAddr, before: &str, request: &str) -> String {
    let answers = raw_exchange(addr, format!("{before}{request}").as_bytes()).await;
    if before.is_empty() {
        return answers;
    }
    let second = answers[1..]
        .find("HTTP/1.1 ")
        .map_or(answers.len(), |at| at + 1);
    answers[second..].to_string()
}

pub fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or_default()
}
