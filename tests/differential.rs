//! Differential parsing: generated HTTP/1 requests, valid ones and ones built from the
//! classic smuggling ingredients, are sent to the gateway's fast path, to its general
//! path (hyper), and to h11, an independent parser (PyPI, `scripts/h11-setup.sh`).
//! What Deploy receives from either path must be what h11 reads from the same bytes:
//! the same requests, in the same order, with the same method, target, headers and
//! body. The gateway may refuse more than h11 does; it may not accept what h11 refuses,
//! nor read it differently, except for the named differences in [`EXCEPTIONS`].
//! docs/differential-parsing.md says what is generated and why.
//!
//! `PATGATE_DIFF_CASES` sets the number of cases (256 by default);
//! `scripts/differential.sh` runs many more.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use patgate::core::token::Expiration;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The gateway's limit on a request head, which h11 is given too.
const MAX_HEAD: usize = 64 * 1024;

/// A request without a credential, which the general path takes: sent first on a
/// connection, it keeps the whole connection there.
const PREAMBLE: &[u8] = b"GET /differential/preamble HTTP/1.1\r\nHost: preamble.test\r\n\r\n";

// ---------------------------------------------------------------- what is compared

/// One request as a parser read it, or as Deploy received it.
#[derive(Clone, PartialEq, Eq)]
struct Message {
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// Headers the gateway documents that it removes, sets or rewrites
/// (docs/request-handling.md): the credential, cookies of a token request, identity and
/// forwarding headers, hop-by-hop headers, and the framing, which the body stands for.
/// Names are compared lower-case with `_` read as `-`, as the gateway reads them.
const GATEWAY_WRITES: &[&str] = &[
    "authorization",
    "x-deploy-personal-token",
    "cookie",
    "x-deploy-user",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn normal_name(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|b| match b.to_ascii_lowercase() {
            b'_' => b'-',
            b => b,
        })
        .collect()
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.method.escape_ascii(),
            self.target.escape_ascii()
        )?;
        for (name, value) in &self.headers {
            write!(f, " | {}: {}", name.escape_ascii(), value.escape_ascii())?;
        }
        write!(f, " | body {:?}", self.body.escape_ascii().to_string())
    }
}

impl Message {
    /// The headers a reader of Deploy's side compares, in order per name (hyper groups
    /// a name's lines together; the order of different names carries no meaning).
    fn compared(&self, keep_host: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        // The headers `Connection` names are hop-by-hop too.
        let named: Vec<Vec<u8>> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .map(|t| normal_name(t.trim_ascii()))
            .collect();
        let mut kept: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| {
                let n = normal_name(n);
                !named.contains(&n)
                    && !GATEWAY_WRITES.contains(&String::from_utf8_lossy(&n).as_ref())
                    && !n.starts_with(b"x-forwarded-")
                    && (keep_host || n != b"host")
            })
            // `X_Custom` and `X-Custom` stay two names, as hyper keeps them.
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        kept
    }

    fn has_header(&self, name: &[u8]) -> bool {
        self.headers.iter().any(|(n, _)| normal_name(n) == name)
    }
}

// ---------------------------------------------------------------- Deploy's side

/// What reached the stand-in Deploy: a request, or bytes it could not read as one.
#[derive(Debug, Clone)]
enum Arrival {
    Request(Message),
    Garbage(String),
}

/// A Deploy stand-in on raw TCP that reads each request the gateway sends, strictly,
/// records it and answers 200 with no body.
struct Recorder {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// Connections in the middle of a request: a large upload still streaming.
    busy: Arc<AtomicUsize>,
}

/// Counts a recorder connection as busy while it holds part of a request.
struct Busy(Arc<AtomicUsize>, bool);

impl Busy {
    fn set(&mut self, busy: bool) {
        if busy != self.1 {
            if busy {
                self.0.fetch_add(1, Ordering::SeqCst);
            } else {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
            self.1 = busy;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.set(false);
    }
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let busy: Arc<AtomicUsize> = Arc::default();
        let (log, count) = (arrivals.clone(), busy.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, log.clone(), Busy(count.clone(), false)));
            }
        });
        Recorder {
            addr,
            arrivals,
            busy,
        }
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// What reached Deploy from the client at `client` (its `X-Forwarded-For`); the
    /// rest, late arrivals from earlier clients, is dropped.
    fn take(&self, client: IpAddr) -> Vec<Arrival> {
        let client = client.to_string();
        std::mem::take(&mut *self.arrivals.lock().unwrap())
            .into_iter()
            .filter(|a| match a {
                Arrival::Request(m) => m.headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case(b"x-forwarded-for") && *v == client.as_bytes()
                }),
                Arrival::Garbage(_) => true,
            })
            .collect()
    }
}

async fn record(mut stream: TcpStream, log: Arc<Mutex<Vec<Arrival>>>, mut busy: Busy) {
    let mut buf = Vec::new();
    let garbage =
        |log: &Mutex<Vec<Arrival>>, why: String| log.lock().unwrap().push(Arrival::Garbage(why));
    loop {
        let (head_len, mut message, chunked, length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let message = Message {
                        method: parsed.method.unwrap_or_default().as_bytes().to_vec(),
                        target: parsed.path.unwrap_or_default().as_bytes().to_vec(),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
                            .collect(),
                        body: Vec::new(),
                    };
                    let value = |name: &str| {
                        parsed
                            .headers
                            .iter()
                            .filter(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned())
                            .collect::<Vec<_>>()
                    };
                    let te = value("transfer-encoding");
                    let cl = value("content-length");
                    let chunked = match te.as_slice() {
                        [] => false,
                        [one] if one.eq_ignore_ascii_case("chunked") => true,
                        _ => return garbage(&log, format!("transfer-encoding {te:?}")),
                    };
                    let length = match cl.as_slice() {
                        [] => 0,
                        [one] if !chunked => match one.parse::<usize>() {
                            Ok(n) => n,
                            Err(_) => return garbage(&log, format!("content-length {one:?}")),
                        },
                        _ => return garbage(&log, format!("content-length {cl:?} with {te:?}")),
                    };
                    break (len, message, chunked, length);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return garbage(&log, format!("{e}: {}", buf.escape_ascii())),
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
            busy.set(true);
        };
        buf.drain(..head_len);
        loop {
            if chunked {
                match decode_chunked(&buf) {
                    Ok(Some((used, body))) => {
                        buf.drain(..used);
                        message.body = body;
                        break;
                    }
                    Ok(None) => {}
                    Err(why) => return garbage(&log, why),
                }
            } else if buf.len() >= length {
                message.body = buf.drain(..length).collect();
                break;
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        }
        log.lock().unwrap().push(Arrival::Request(message));
        busy.set(!buf.is_empty());
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// A chunked body as RFC 9112 §7.1 writes it: `Ok(None)` while incomplete, else the
/// bytes it took and the data.
fn decode_chunked(buf: &[u8]) -> Result<Option<(usize, Vec<u8>)>, String> {
    let line_at = |at: usize| {
        buf[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| (&buf[at..at + p], at + p + 2))
    };
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some((line, next)) = line_at(at) else {
            return Ok(None);
        };
        // Spaces or tabs may follow the size (hyper and h11 both allow them).
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = &size[..size.len()
            - size
                .iter()
                .rev()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count()];
        let size = (!size.is_empty() && size.iter().all(u8::is_ascii_hexdigit))
            .then(|| std::str::from_utf8(size).ok())
            .flatten()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| format!("chunk size line {:?}", line.escape_ascii().to_string()))?;
        at = next;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                let Some((line, next)) = line_at(at) else {
                    return Ok(None);
                };
                at = next;
                if line.is_empty() {
                    return Ok(Some((at, body)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

// ---------------------------------------------------------------- the client's side

/// What one path made of a case: what Deploy received (the preamble left out) and the
/// status lines the client got back.
#[derive(Debug)]
struct Seen {
    arrivals: Vec<Arrival>,
    statuses: Vec<u16>,
}

/// Sends `bytes` on one connection and reads the answers; once the gateway has said
/// all it will (it closed, or was silent for [`SETTLE`]), closes the sending side and
/// reads until the gateway closes. Then takes what Deploy received.
///
/// The sending side stays open until then: hyper drops the answer it owes when it
/// reads the end of the input while that answer is pending.
async fn through_gateway(addr: SocketAddr, recorder: &Recorder, bytes: &[u8]) -> Seen {
    // Each connection from its own loopback address, so that what reaches Deploy is
    // told apart from a late arrival of an earlier one.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let client = IpAddr::from([
        127,
        0,
        0,
        2 + (NEXT.fetch_add(1, Ordering::SeqCst) % 250) as u8,
    ]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(client, 0)).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    // The gateway may close before it has read everything: a refusal.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        match tokio::time::timeout(SETTLE, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            // Deploy still reading a request: its answer is still to come.
            Err(_) if recorder.busy() && Instant::now() < deadline => {}
            Err(_) => break false,
        }
    };
    if !closed {
        let _ = stream.shutdown().await;
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await
        {
            answer.extend_from_slice(&chunk[..n]);
        }
    }
    // A request cut off with the client's connection ends at Deploy too.
    while recorder.busy() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Seen {
        arrivals: recorder.take(client),
        statuses: statuses(&answer),
    }
}

/// How long a gateway that has answered everything it can is silent before the
/// client ends its side of the connection.
const SETTLE: Duration = Duration::from_millis(15);

/// The status codes of the answers in a byte stream (bodies are short and never hold
/// a status line of their own).
fn statuses(answer: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(p) = answer[at..].windows(9).position(|w| w == b"HTTP/1.1 ") {
        let start = at + p;
        if start == 0 || answer[start - 1] == b'\n' {
            if let Some(code) = answer
                .get(start + 9..start + 12)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse().ok())
            {
                out.push(code);
            }
        }
        at = start + 9;
    }
    out
}

// ---------------------------------------------------------------- h11

/// h11's reading of a case: the requests it read in full, and whether it refused what
/// followed them.
#[derive(Debug)]
struct H11Reading {
    requests: Vec<(Message, usize)>,
    error: Option<String>,
}

/// One h11 process for the whole run, reading a case per line.
struct H11 {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl H11 {
    fn start() -> H11 {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/http1");
        let python = format!("{dir}/.venv/bin/python");
        assert!(
            std::path::Path::new(&python).exists(),
            "{python} is missing: run `bash scripts/h11-setup.sh` (scripts/test.sh does)"
        );
        let mut child = Command::new(python)
            .arg(format!("{dir}/h11_parse.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        H11 {
            child,
            input,
            output,
        }
    }

    fn read(&mut self, bytes: &[u8]) -> H11Reading {
        let b64 = base64::engine::general_purpose::STANDARD;
        let line = serde_json::json!({"max_head": MAX_HEAD, "data": b64.encode(bytes)});
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
        let mut answer = String::new();
        self.output.read_line(&mut answer).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let bytes = |v: &serde_json::Value| b64.decode(v.as_str().unwrap()).unwrap();
        let requests = answer["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let message = Message {
                    method: bytes(&r["method"]),
                    target: bytes(&r["target"]),
                    headers: r["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| (bytes(&h[0]), bytes(&h[1])))
                        .collect(),
                    body: bytes(&r["body"]),
                };
                (message, r["end"].as_u64().unwrap() as usize)
            })
            .collect();
        H11Reading {
            requests,
            error: answer["error"].as_str().map(str::to_string),
        }
    }
}

impl Drop for H11 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- generated requests

/// The bytes a client sends on one connection; printed with the token left out.
#[derive(Clone)]
struct Case {
    bytes: Vec<u8>,
    token: Arc<str>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.bytes.escape_ascii().to_string();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{}", self.token));
        let text = text
            .replace(&basic, "<basic token>")
            .replace(&*self.token, "<token>");
        write!(f, "\"{text}\"")
    }
}

/// A line ending: almost always CRLF, sometimes a bare LF, a bare CR or CR CR LF.
fn eol() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        40 => Just(&b"\r\n"[..]),
        1 => Just(&b"\n"[..]),
        1 => Just(&b"\r"[..]),
        1 => Just(&b"\r\r\n"[..]),
    ]
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
            .prop_map(|m| m.as_bytes().to_vec()),
        1 => prop::sample::select(vec![
            &b"get"[..], b"G\xc9T", b"GET\x00", b"", b"TRACE", b"CONNECT", b"P(ST", b"GET\t"
        ])
        .prop_map(<[u8]>::to_vec),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::sample::select(vec![
            "/", "/deploy/repository/ci/Applications", "/a?b=c&d=e", "/a%20b", "/x/../y"
        ])
        .prop_map(|t| t.as_bytes().to_vec()),
        1 => prop::sample::select(vec![
            &b"/caf\xc3\xa9"[..], b"/a\xffb", b"/a\x7fb", b"/a\x00b", b"*",
            b"http://deploy.test/absolute", b"/;jsessionid=1", b"/patgate/health", b"", b"a"
        ])
        .prop_map(<[u8]>::to_vec),
        1 => Just([&b"/"[..], &[b'a'; 9000]].concat()),
    ]
}

fn version() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        30 => Just(&b"HTTP/1.1"[..]),
        2 => Just(&b"HTTP/1.0"[..]),
        1 => prop::sample::select(vec![&b"HTTP/1.2"[..], b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "]),
    ]
}

/// What separates a header's name from its value.
fn colon() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        20 => Just(&b": "[..]),
        4 => Just(&b":"[..]),
        1 => prop::sample::select(vec![&b" : "[..], b"\t:", b":\t", b":  ", b" :"]),
    ]
}

/// One header line, before its line ending; `fold` is an obs-fold continuation.
#[derive(Debug, Clone)]
struct Line {
    name: Vec<u8>,
    colon: &'static [u8],
    value: Vec<u8>,
    fold: Option<&'static [u8]>,
    eol: &'static [u8],
}

impl Line {
    fn plain(name: &[u8], value: &[u8]) -> Line {
        Line {
            name: name.to_vec(),
            colon: b": ",
            value: value.to_vec(),
            fold: None,
            eol: b"\r\n",
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.name);
        out.extend_from_slice(self.colon);
        out.extend_from_slice(&self.value);
        if let Some(fold) = self.fold {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(fold);
        }
        out.extend_from_slice(self.eol);
    }
}

/// A header line with the given name and value strategies, and a generated separator,
/// continuation and line ending.
fn line(
    name: impl Strategy<Value = Vec<u8>>,
    value: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = Line> {
    let fold = prop_oneof![
        30 => Just(None),
        1 => prop::sample::select(vec![&b" folded"[..], b"\tfolded", b" ", b"x: smuggled"]).prop_map(Some),
    ];
    (name, colon(), value, fold, eol()).prop_map(|(name, colon, value, fold, eol)| Line {
        name,
        colon,
        value,
        fold,
        eol,
    })
}

fn bytes_of(options: Vec<&'static [u8]>) -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(options).prop_map(<[u8]>::to_vec)
}

/// Headers other than framing, host and the credential.
fn other_header() -> impl Strategy<Value = Line> {
    let name = prop_oneof![
        12 => bytes_of(vec![
            b"Accept", b"User-Agent", b"Content-Type", b"X-Custom", b"x-custom", b"X_Custom",
            b"Accept-Encoding", b"Via", b"Content_Length", b"Transfer_Encoding",
        ]),
        3 => bytes_of(vec![
            b"Connection", b"Keep-Alive", b"TE", b"Trailer", b"Upgrade", b"Expect", b"Cookie",
            b"X-Forwarded-For", b"X-Deploy-User", b"Forwarded",
        ]),
        1 => bytes_of(vec![
            b"X-Caf\xc3\xa9", b"X Custom", b"X\x00Y", b"", b"X\x7fY", b"(X)", b"\x80",
        ]),
    ];
    let value = prop_oneof![
        12 => bytes_of(vec![
            b"text/plain", b"*/*", b"a, b", b"", b"curl/8.5.0", b"gzip, deflate",
            b"keep-alive", b"close", b"100-continue", b"websocket", b"x-custom", b"trailers",
            b"chunked", b"5",
        ]),
        2 => bytes_of(vec![
            b"  padded  ", b"caf\xc3\xa9", b"\xff", b"a\x7fb", b"a\x00b", b"a\x0bb", b"a\rb",
            b"a\tb", b"\"quoted\"",
        ]),
        1 => Just(vec![b'v'; 9000]),
        1 => Just(vec![b'w'; 70000]),
    ];
    line(name, value)
}

/// How a number is written: a `Content-Length` (decimal) or a chunk size (hex), for
/// `n` bytes. Every form serves both.
#[derive(Debug, Clone, Copy)]
enum Number {
    Exact,
    Upper,
    LeadingZeros,
    Plus,
    Minus,
    ZeroX,
    Repeated,
    Conflicting,
    OneMore,
    OneLess,
    Spaced,
    SpaceBefore,
    SpaceAfter,
    TabAfter,
    Overlong,
    TooLong,
    Huge,
    Empty,
}

impl Number {
    fn write(self, n: usize, hex: bool) -> Vec<u8> {
        let digits = |n: usize| {
            if hex {
                format!("{n:x}")
            } else {
                format!("{n}")
            }
        };
        let d = digits(n);
        match self {
            Number::Exact => d,
            Number::Upper => d.to_uppercase(),
            Number::LeadingZeros => format!("000{d}"),
            Number::Plus => format!("+{d}"),
            Number::Minus => format!("-{d}"),
            Number::ZeroX => format!("0x{n:x}"),
            Number::Repeated => format!("{d}, {d}"),
            Number::Conflicting => format!("{d}, {}", digits(n + 1)),
            Number::OneMore => digits(n + 1),
            Number::OneLess => digits(n.saturating_sub(1)),
            Number::Spaced => format!("{d} {d}"),
            Number::SpaceBefore => format!(" {d}"),
            Number::SpaceAfter => format!("{d} "),
            Number::TabAfter => format!("{d}\t"),
            Number::Overlong => format!("{d:0>16}"),
            Number::TooLong => format!("{d:0>21}"),
            Number::Huge => "99999999999999999999".into(),
            Number::Empty => String::new(),
        }
        .into_bytes()
    }
}

/// A number's form: mostly plain (`common`), sometimes any other.
fn number(common: Vec<Number>) -> impl Strategy<Value = Number> {
    use Number::*;
    prop_oneof![
        12 => prop::sample::select(common),
        1 => prop::sample::select(vec![
            Upper, LeadingZeros, Plus, Minus, ZeroX, Repeated, Conflicting, OneMore, OneLess,
            Spaced, SpaceBefore, SpaceAfter, TabAfter, Overlong, TooLong, Huge, Empty,
        ]),
    ]
}

fn extension() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        12 => Just(&b""[..]),
        1 => prop::sample::select(vec![
            &b";a=b"[..], b";a=\"q ;\\\"x\"", b";", b";a", b" ;a=b", b";a=b ", b";\xff",
        ]),
    ]
}

/// Body data: text, line breaks and digits, or a whole request hidden inside.
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(prop::sample::select(b"abz 09\r\n;".to_vec()), 0..24),
        1 => Just(b"GET /smuggled HTTP/1.1\r\nHost: deploy.test\r\n\r\n".to_vec()),
        1 => Just(vec![b'd'; 70_000]),
    ]
}

#[derive(Debug, Clone)]
struct Chunk {
    data: Vec<u8>,
    size: Number,
    extension: &'static [u8],
    size_eol: &'static [u8],
    data_eol: &'static [u8],
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let size = number(vec![Number::Exact, Number::Upper]);
    (data(), size, extension(), eol(), eol()).prop_map(
        |(data, size, extension, size_eol, data_eol)| Chunk {
            data,
            size,
            extension,
            size_eol,
            data_eol,
        },
    )
}

/// How the body is framed: its headers and its bytes.
#[derive(Debug, Clone)]
enum Framing {
    None,
    Length {
        forms: Vec<Number>,
        body: Vec<u8>,
    },
    Chunked {
        codings: Vec<Line>,
        length: Option<Number>,
        chunks: Vec<Chunk>,
        last: &'static [u8],
        trailers: Vec<&'static [u8]>,
        end: &'static [u8],
    },
}

fn coding_line() -> impl Strategy<Value = Line> {
    let name = prop_oneof![
        12 => Just(b"Transfer-Encoding".to_vec()),
        1 => bytes_of(vec![b"transfer-encoding", b"TRANSFER-ENCODING", b"Transfer_Encoding"]),
    ];
    let value = prop_oneof![
        12 => Just(b"chunked".to_vec()),
        1 => bytes_of(vec![
            b"Chunked", b"CHUNKED", b"gzip, chunked", b"chunked, identity", b" chunked",
            b"\tchunked", b"chunked ", b"chunked,", b",chunked", b"identity", b"gzip",
            b"chunked, chunked", b"xchunked", b"chunked;q=1", b"chunk\xc3\xa9d", b"",
        ]),
    ];
    line(name, value)
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        4 => Just(Framing::None),
        6 => (prop::collection::vec(number(vec![Number::Exact]), 1..=2), data())
            .prop_map(|(forms, body)| Framing::Length { forms, body }),
        5 => (
            prop::collection::vec(coding_line(), 1..=2),
            prop_oneof![8 => Just(None), 1 => number(vec![Number::Exact]).prop_map(Some)],
            prop::collection::vec(chunk(), 0..3),
            prop_oneof![
                12 => Just(&b"0\r\n"[..]),
                1 => prop::sample::select(vec![&b"00\r\n"[..], b"0;x=y\r\n", b"0\n", b"0 \r\n", b"0x0\r\n"]),
            ],
            prop_oneof![
                6 => Just(Vec::new()),
                1 => prop::collection::vec(
                    prop::sample::select(vec![&b"x-trailer: 1\r\n"[..], b"bad trailer\r\n", b"x-t: 1\n", b"Content-Length: 5\r\n"]),
                    1..=2
                ),
            ],
            prop_oneof![12 => Just(&b"\r\n"[..]), 1 => prop::sample::select(vec![&b"\n"[..], b""])],
        )
            .prop_map(|(codings, length, chunks, last, trailers, end)| Framing::Chunked {
                codings,
                length,
                chunks,
                last,
                trailers,
                end,
            }),
    ]
}

impl Framing {
    /// Its header lines, and its body.
    fn write(&self) -> (Vec<Line>, Vec<u8>) {
        match self {
            Framing::None => (Vec::new(), Vec::new()),
            Framing::Length { forms, body } => {
                let lines = forms
                    .iter()
                    .map(|f| Line::plain(b"Content-Length", &f.write(body.len(), false)))
                    .collect();
                (lines, body.clone())
            }
            Framing::Chunked {
                codings,
                length,
                chunks,
                last,
                trailers,
                end,
            } => {
                let mut body = Vec::new();
                for c in chunks {
                    body.extend_from_slice(&c.size.write(c.data.len(), true));
                    body.extend_from_slice(c.extension);
                    body.extend_from_slice(c.size_eol);
                    body.extend_from_slice(&c.data);
                    body.extend_from_slice(c.data_eol);
                }
                body.extend_from_slice(last);
                for t in trailers {
                    body.extend_from_slice(t);
                }
                body.extend_from_slice(end);
                let mut lines = codings.clone();
                if let Some(form) = length {
                    lines.push(Line::plain(
                        b"Content-Length",
                        &form.write(body.len(), false),
                    ));
                }
                (lines, body)
            }
        }
    }
}

/// One request: its request line, headers in a generated order and its body.
#[derive(Debug, Clone)]
struct Request {
    method: Vec<u8>,
    target: Vec<u8>,
    version: &'static [u8],
    request_eol: &'static [u8],
    hosts: Vec<Line>,
    /// Whether the token goes in `Authorization: Basic` or `x-deploy-personal-token`.
    basic: bool,
    others: Vec<Line>,
    framing: Framing,
    /// Where each line goes among the others: a permutation's keys.
    order: Vec<u8>,
    end: &'static [u8],
}

fn host_line() -> impl Strategy<Value = Line> {
    let value = prop_oneof![
        12 => Just(b"deploy.test".to_vec()),
        1 => bytes_of(vec![b"deploy.test:4516", b"", b"a b", b"deploy.test:x", b"caf\xc3\xa9.test", b"[::1]:80"]),
    ];
    let name =
        prop_oneof![12 => Just(b"Host".to_vec()), 1 => bytes_of(vec![b"host", b"HOST", b"Host_"])];
    line(name, value)
}

fn request() -> impl Strategy<Value = Request> {
    (
        (method(), target(), version(), eol()),
        prop_oneof![12 => prop::collection::vec(host_line(), 1..=1), 1 => prop::collection::vec(host_line(), 0..=2)],
        any::<bool>(),
        prop::collection::vec(other_header(), 0..4),
        framing(),
        prop::collection::vec(any::<u8>(), 12),
        prop_oneof![40 => Just(&b"\r\n"[..]), 1 => prop::sample::select(vec![&b"\n"[..], b"\r", b" \r\n"])],
    )
        .prop_map(
            |((method, target, version, request_eol), hosts, basic, others, framing, order, end)| {
                Request {
                    method,
                    target,
                    version,
                    request_eol,
                    hosts,
                    basic,
                    others,
                    framing,
                    order,
                    end,
                }
            },
        )
}

impl Request {
    fn write(&self, token: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.push(b' ');
        out.extend_from_slice(self.version);
        out.extend_from_slice(self.request_eol);
        let credential = if self.basic {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{token}"));
            Line::plain(b"Authorization", format!("Basic {basic}").as_bytes())
        } else {
            Line::plain(b"x-deploy-personal-token", token.as_bytes())
        };
        let (framing, body) = self.framing.write();
        let mut lines: Vec<Line> = self.hosts.to_vec();
        lines.push(credential);
        lines.extend(self.others.iter().cloned());
        lines.extend(framing);
        let mut keyed: Vec<(u8, Line)> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| (self.order.get(i).copied().unwrap_or(u8::MAX), l))
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        for (_, line) in keyed {
            line.write(out);
        }
        out.extend_from_slice(self.end);
        out.extend_from_slice(&body);
    }
}

/// What follows the first request on its connection.
#[derive(Debug, Clone)]
enum After {
    Nothing,
    /// A plain GET with the token.
    Simple,
    Generated(Box<Request>),
    Stray(&'static [u8]),
}

fn case(token: Arc<str>) -> impl Strategy<Value = Case> {
    let after = prop_oneof![
        5 => Just(After::Nothing),
        3 => Just(After::Simple),
        2 => request().prop_map(|r| After::Generated(Box::new(r))),
        1 => prop::sample::select(vec![&b"\r\n"[..], b"x", b"GET / HTTP/1.1\r\n"]).prop_map(After::Stray),
    ];
    (request(), after).prop_map(move |(first, after)| {
        let mut bytes = Vec::new();
        first.write(&token, &mut bytes);
        match after {
            After::Nothing => {}
            After::Simple => bytes.extend_from_slice(
                format!("GET /second HTTP/1.1\r\nHost: deploy.test\r\nx-deploy-personal-token: {token}\r\n\r\n")
                    .as_bytes(),
            ),
            After::Generated(second) => second.write(&token, &mut bytes),
            After::Stray(stray) => bytes.extend_from_slice(stray),
        }
        Case {
            bytes,
            token: token.clone(),
        }
    })
}

// ---------------------------------------------------------------- judging a case

/// A difference between the gateway and h11 that is understood and allowed.
struct Exception {
    name: &'static str,
    reason: &'static str,
    /// Whether it explains this request: the case's bytes from where the request
    /// starts, what Deploy received, and h11's reading of the same request (`None`:
    /// h11 did not read it).
    applies: fn(&[u8], &Message, Option<&Message>) -> bool,
}

/// Every explained difference; docs/differential-parsing.md gives the same list.
const EXCEPTIONS: &[Exception] = &[
    Exception {
        name: "equal lengths written differently",
        reason: "Content-Length given more than once (in lines or a list) with the same \
                 number written differently (`17` and `0017`): h11 compares the text and \
                 refuses, hyper compares the numbers and reads one length, the same one \
                 Deploy is sent",
        applies: |case, gateway, h11| {
            let lengths = header_values(case, b"content-length");
            let numbers: Vec<Option<u64>> = lengths
                .iter()
                .map(|v| std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()))
                .collect();
            h11.is_none()
                && lengths.len() > 1
                && numbers
                    .iter()
                    .all(|n| *n == Some(gateway.body.len() as u64))
        },
    },
    Exception {
        name: "leading zeros past 20 digits",
        reason: "a chunk size or a Content-Length of more than 20 digits, all but the \
                 last few zeros: h11 refuses any over 20 digits, hyper reads the value \
                 (RFC 9112 §6.2 and §7.1 limit the value, not the digits)",
        applies: |case, _, h11| {
            let padded = |v: &[u8]| v.len() > 20 && v[..v.len() - 16].iter().all(|&b| b == b'0');
            h11.is_none()
                && (case.split(|&b| b == b'\n').any(padded)
                    || header_values(case, b"content-length")
                        .iter()
                        .any(|v| padded(v)))
        },
    },
    Exception {
        name: "empty list elements in Transfer-Encoding",
        reason: "`Transfer-Encoding: ,chunked` or `chunked,`: RFC 9110 §5.6.1 has a \
                 recipient ignore empty list elements, and hyper reads chunked; h11 takes \
                 only the exact value `chunked`",
        applies: |case, _, h11| {
            let codings = header_values(case, b"transfer-encoding");
            h11.is_none()
                && codings.iter().any(|c| c.is_empty())
                && codings
                    .iter()
                    .filter(|c| !c.is_empty())
                    .all(|c| c.eq_ignore_ascii_case(b"chunked"))
        },
    },
    Exception {
        name: "bytes past ASCII in the target",
        reason: "a target with bytes 0x80-0xFF (`/caf\\xc3\\xa9`): h11 takes only visible \
                 ASCII, httparse and hyper take them as they are; both paths forward them \
                 unchanged, so Deploy reads the same target from either, and decides",
        applies: |_, gateway, h11| h11.is_none() && !gateway.target.is_ascii(),
    },
    Exception {
        name: "a length beside chunked",
        reason: "Content-Length and Transfer-Encoding: chunked together: both hyper and h11 \
                 let chunked decide (RFC 9112 §6.3) and Deploy is sent no length, but h11 \
                 first refuses a length it cannot read (`+5`), which hyper skips",
        applies: |case, _, h11| {
            h11.is_none()
                && !header_values(case, b"transfer-encoding").is_empty()
                && !header_values(case, b"content-length").is_empty()
        },
    },
    Exception {
        name: "whitespace before a chunk extension",
        reason: "`5 ;a=b`: RFC 9112 §7.1.1 allows whitespace (BWS) before the `;`, as \
                 hyper does; h11 takes none",
        applies: |case, _, h11| {
            h11.is_none()
                && case.split(|&b| b == b'\n').any(|line| {
                    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                    let blanks = line[digits..]
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    digits > 0 && blanks > 0 && line.get(digits + blanks) == Some(&b';')
                })
        },
    },
];

/// Every value of a header in the first head of `bytes`, its comma-separated list
/// items too, trimmed.
fn header_values(bytes: &[u8], name: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .skip(1)
        .take_while(|line| !line.strip_suffix(b"\r").unwrap_or(line).is_empty())
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name)
                .then(|| &line[colon + 1..])
        })
        .flat_map(|value| value.split(|&b| b == b','))
        .map(|v| v.trim_ascii().to_vec())
        .collect()
}

/// What a run saw, for its closing summary.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    /// Requests h11 read in full.
    h11_read: usize,
    /// Requests Deploy received, per path the case was sent to.
    fast_forwarded: usize,
    general_forwarded: usize,
    /// Of those sent as fast-path cases, the ones the fast path itself forwarded.
    fast_path_served: usize,
    /// Requests h11 read that the gateway refused, per path.
    fast_refused: usize,
    general_refused: usize,
    explained: BTreeMap<&'static str, usize>,
}

/// Whether Deploy got this request from the fast path: it writes the client's header
/// names as they came, with `x-forwarded-host` just before `Host`; hyper writes
/// names in lower case.
fn from_fast_path(message: &Message) -> bool {
    message
        .headers
        .windows(2)
        .any(|w| w[0].0 == b"x-forwarded-host" && w[1].0.eq_ignore_ascii_case(b"host"))
}

/// The authority of an absolute-form target.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let rest = [&b"http://"[..], b"https://"].iter().find_map(|scheme| {
        (target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme))
            .then(|| &target[scheme.len()..])
    })?;
    Some(&rest[..rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())])
}

/// The target Deploy is sent for a target h11 read: the absolute form's path.
fn origin_form(target: &[u8]) -> &[u8] {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            return rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(&b"/"[..], |p| &rest[p..]);
        }
    }
    target
}

/// Where Deploy's request differs from h11's reading, if it does.
fn difference(gateway: &Message, h11: &Message) -> Option<String> {
    if gateway.method != h11.method {
        return Some("method".into());
    }
    if gateway.target != origin_form(&h11.target) {
        return Some("target".into());
    }
    // An HTTP/1.0 request without Host is sent with Deploy's own address.
    let keep_host = h11.has_header(b"host");
    let mut theirs = h11.clone();
    if let Some(authority) = absolute_authority(&h11.target) {
        // RFC 9112 §3.2.2: an absolute-form target's authority is the host.
        for (name, value) in theirs.headers.iter_mut() {
            if normal_name(name) == b"host" {
                *value = authority.to_vec();
            }
        }
    }
    let (ours, theirs) = (gateway.compared(keep_host), theirs.compared(keep_host));
    if ours != theirs {
        let show = |h: &[(Vec<u8>, Vec<u8>)]| {
            h.iter()
                .map(|(n, v)| format!("{}: {}", n.escape_ascii(), v.escape_ascii()))
                .collect::<Vec<_>>()
        };
        return Some(format!(
            "headers {:?} against h11's {:?}",
            show(&ours),
            show(&theirs)
        ));
    }
    if gateway.body != h11.body {
        return Some(format!(
            "body of {} bytes against h11's {}",
            gateway.body.len(),
            h11.body.len()
        ));
    }
    None
}

/// The rule for a request h11 refuses for what it says rather than for its framing
/// (two `Host` lines, say), which the gateway also refuses, with 400, and then reads
/// the next request after it on the same connection, as HTTP/1.1 allows. h11 stops at
/// its first refusal, so it is asked again from the end of that request; this is done
/// only where that end is beyond doubt ([`plain_end`]).
const READ_ON: &str = "a request refused for its meaning, and the next one read";

/// The rule for a pipelined request after an HTTP/1.0 one with `Connection:
/// keep-alive`: h11 closes after every HTTP/1.0 request, hyper keeps such a connection
/// open as RFC 9112 §9.3 allows, so h11 is asked again from where that request ended.
const KEPT_ALIVE: &str = "an HTTP/1.0 connection kept alive";

/// Whether `request` is HTTP/1.0 and asks to be kept alive.
fn kept_alive_1_0(request: &[u8]) -> bool {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    line.trim_ascii_end().ends_with(b"HTTP/1.0")
        && header_values(request, b"connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case(b"keep-alive"))
}

/// Where the refused request at `start` ends if its end is beyond doubt: it has no
/// bare CR and no continuation line, and either `Content-Length` lines that all
/// give the same number in plain digits, or one `Transfer-Encoding: chunked` (and no length) with a strictly
/// chunked body.
fn plain_end(case: &[u8], start: usize) -> Option<usize> {
    let rest = case.get(start..)?;
    // The head ends at its first empty line; both parsers take a bare LF as a line end.
    let mut line_start = 0;
    let mut body_at = None;
    for (i, _) in rest.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        let line = &rest[line_start..i];
        if line_start > 0 && line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
            body_at = Some(i + 1);
            break;
        }
        line_start = i + 1;
    }
    let body_at = body_at?;
    let head = &rest[..body_at];
    let lone = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && head.get(i + 1) != Some(&b'\n'));
    let (mut lengths, mut codings) = (Vec::new(), Vec::new());
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let value = line[colon + 1..].trim_ascii();
        match line[..colon].to_ascii_lowercase().as_slice() {
            b"transfer-encoding" => codings.push(value),
            b"content-length" => lengths.push(value),
            _ => {}
        }
    }
    let body_at = start + body_at;
    let body = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => 0,
        (lengths, []) => {
            // Repeated or listed, as long as every one is the same number in digits.
            let mut numbers = lengths
                .iter()
                .flat_map(|l| l.split(|&b| b == b','))
                .map(|n| {
                    let n = n.trim_ascii();
                    (!n.is_empty() && n.iter().all(u8::is_ascii_digit))
                        .then(|| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                        .flatten()
                });
            let first = numbers.next()??;
            numbers.all(|n| n == Some(first)).then_some(first)?
        }
        ([], [coding]) if coding.eq_ignore_ascii_case(b"chunked") => {
            decode_chunked(&case[body_at..]).ok()??.0
        }
        _ => return None,
    };
    let after = body_at + body;
    (!lone && after <= case.len()).then_some(after)
}

/// Asks h11 again about a case from `from` on, past a request it stopped at: the
/// requests it reads are added to `requests` with their ends counted from the start of
/// the case, and `reread_from` moves to `from`. Returns whether h11 refused what followed.
fn read_again(
    case: &[u8],
    from: usize,
    reread: &mut dyn FnMut(&[u8]) -> H11Reading,
    requests: &mut Vec<(Message, usize)>,
    reread_from: &mut usize,
) -> bool {
    let again = reread(&case[from..]);
    *reread_from = from;
    requests.extend(again.requests.into_iter().map(|(m, end)| (m, end + from)));
    again.error.is_some()
}

/// Judges what one path forwarded against h11's reading of the same bytes; `reread`
/// asks h11 about the bytes after a refused request (see [`READ_ON`]).
fn judge(
    path: &str,
    case: &Case,
    seen: &Seen,
    h11: &H11Reading,
    reread: &mut dyn FnMut(&[u8]) -> H11Reading,
    tally: &mut Tally,
) -> Result<(), String> {
    let fail = |what: String| {
        Err(format!(
            "{path}: {what}\n  Deploy received: {:?}\n  the client got: {:?}\n  h11: {h11:?}",
            seen.arrivals, seen.statuses
        ))
    };
    // h11's requests (and where they end) not yet matched: the gateway may refuse one
    // and go on with the next on the same connection, so Deploy's requests are matched
    // in order, each to the first of the rest that it equals.
    let mut requests = h11.requests.clone();
    let mut refused = h11.error.is_some();
    let mut next = 0;
    // Where h11 was last asked again from: requests before it are behind.
    let mut reread_from = 0;
    for (i, arrival) in seen.arrivals.iter().enumerate() {
        let message = match arrival {
            Arrival::Request(m) => m,
            Arrival::Garbage(why) => {
                return fail(format!("Deploy could not read what it got: {why}"))
            }
        };
        let mut read_on = false;
        loop {
            let rest = &requests[next..];
            if let Some(k) = rest
                .iter()
                .position(|(m, _)| difference(message, m).is_none())
            {
                next += k + 1;
                if read_on {
                    *tally.explained.entry(READ_ON).or_default() += 1;
                }
                break;
            }
            // Where this request starts: after the last one h11 read before it.
            let start = next
                .checked_sub(1)
                .map_or(0, |i| requests[i].1)
                .max(reread_from);
            let theirs = requests.get(next).map(|(m, _)| m);
            if let Some(e) = EXCEPTIONS
                .iter()
                .find(|e| (e.applies)(&case.bytes[start..], message, theirs))
            {
                *tally.explained.entry(e.name).or_default() += 1;
                if theirs.is_some() {
                    next += 1;
                } else if let Some(after) = plain_end(&case.bytes, start) {
                    // h11 stopped at the request explained: on with the next.
                    refused =
                        read_again(&case.bytes, after, reread, &mut requests, &mut reread_from);
                }
                break;
            }
            // The gateway refused the rest of what h11 read (each for its meaning, as it
            // may) and went on to the request h11 refused: explained there?
            if refused && next < requests.len() {
                let end = requests[requests.len() - 1].1.max(reread_from);
                if EXCEPTIONS
                    .iter()
                    .any(|e| (e.applies)(&case.bytes[end..], message, None))
                {
                    next = requests.len();
                    continue;
                }
            }
            // h11 closes after every HTTP/1.0 request; hyper keeps a 1.0 connection
            // that asks for it open (RFC 9112 §9.3), and reads the next request.
            if !refused && !read_on && next == requests.len() && next > 0 {
                let previous = next.checked_sub(2).map_or(0, |i| requests[i].1);
                if kept_alive_1_0(&case.bytes[previous..start]) {
                    refused =
                        read_again(&case.bytes, start, reread, &mut requests, &mut reread_from);
                    read_on = true;
                    *tally.explained.entry(KEPT_ALIVE).or_default() += 1;
                    continue;
                }
            }
            // h11 refused the request after the last it read: read on past it?
            if refused && next == requests.len() && !read_on {
                if let Some(after) = plain_end(&case.bytes, start) {
                    refused =
                        read_again(&case.bytes, after, reread, &mut requests, &mut reread_from);
                    read_on = true;
                    continue;
                }
            }
            return fail(match theirs {
                None => format!(
                    "request {} reached Deploy, h11 refused or did not see it",
                    i + 1
                ),
                Some(theirs) => format!(
                    "request {}: {}",
                    i + 1,
                    difference(message, theirs).unwrap_or_default()
                ),
            });
        }
    }
    Ok(())
}

/// A gateway (one worker) in front of a [`Recorder`], and a token for it.
struct Setup {
    _db: TestDb,
    recorder: Recorder,
    gw: Gateway,
    token: String,
}

async fn setup() -> Setup {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let recorder = Recorder::start().await;
    let url = format!("http://{}", recorder.addr);
    let gw = Gateway::start(config(&db, &url, &[("PATGATE_WORKERS", "1")])).await;
    let (_, token) = gw
        .create_token("alice", "differential", Expiration::Days7)
        .await;
    Setup {
        _db: db,
        recorder,
        gw,
        token,
    }
}

fn case_count() -> u32 {
    std::env::var("PATGATE_DIFF_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

#[test]
fn deploy_receives_each_request_as_h11_reads_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Setup {
        _db,
        recorder,
        gw,
        token,
    } = rt.block_on(setup());
    let h11 = Mutex::new(H11::start());
    let tally = Mutex::new(Tally::default());
    let mut runner = TestRunner::new(RunnerConfig {
        cases: case_count(),
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..RunnerConfig::default()
    });
    let started = Instant::now();
    let result = runner.run(&case(token.into()), |case| {
        let reading = h11.lock().unwrap().read(&case.bytes);
        let mut tally = tally.lock().unwrap();
        tally.cases += 1;
        tally.h11_read += reading.requests.len();
        for (path, preamble) in [("fast path", &b""[..]), ("general path", PREAMBLE)] {
            let bytes = [preamble, &case.bytes].concat();
            let mut seen = rt.block_on(through_gateway(gw.addr, &recorder, &bytes));
            if !preamble.is_empty() {
                match seen.arrivals.first() {
                    Some(Arrival::Request(m)) if m.target == b"/differential/preamble" => {
                        seen.arrivals.remove(0);
                        seen.statuses.remove(0);
                    }
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "the preamble did not reach Deploy first: {other:?}"
                        )))
                    }
                }
            }
            if std::env::var("DIFF_DEBUG").is_ok() {
                eprintln!("{path}: {case:?} {:?} {:?}", seen.arrivals, seen.statuses);
            }
            let forwarded = seen.arrivals.len();
            let refused = reading.requests.len().saturating_sub(forwarded);
            if preamble.is_empty() {
                tally.fast_forwarded += forwarded;
                tally.fast_refused += refused;
                tally.fast_path_served += seen
                    .arrivals
                    .iter()
                    .filter(|a| matches!(a, Arrival::Request(m) if from_fast_path(m)))
                    .count();
            } else {
                tally.general_forwarded += forwarded;
                tally.general_refused += refused;
            }
            let mut reread = |bytes: &[u8]| h11.lock().unwrap().read(bytes);
            judge(path, &case, &seen, &reading, &mut reread, &mut tally)
                .map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
    let tally = tally.into_inner().unwrap();
    eprintln!("{:?} in {:.1?}", tally, started.elapsed());
    for exception in EXCEPTIONS
        .iter()
        .filter(|e| tally.explained.contains_key(e.name))
    {
        eprintln!("explained, {}: {}", exception.name, exception.reason);
    }
    rt.block_on(gw.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
    // The run must have reached both paths' forwarding, not only their refusals.
    assert!(
        tally.fast_path_served > 0 && tally.general_forwarded > 0,
        "{tally:?}"
    );
}

/// Found by the run above: a GET (or HEAD) with a chunked body reached Deploy without
/// its body, on either path (the fast path leaves chunked uploads to the general one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_reaches_deploy_whatever_the_method() {
    let s = setup().await;
    let token = &s.token;
    for method in ["GET", "HEAD", "POST", "DELETE"] {
        let request = format!(
            "{method} / HTTP/1.1\r\nHost: deploy.test\r\nx-deploy-personal-token: {token}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        for preamble in [&b""[..], PREAMBLE] {
            let seen = through_gateway(
                s.gw.addr,
                &s.recorder,
                &[preamble, request.as_bytes()].concat(),
            )
            .await;
            let bodies: Vec<_> = seen
                .arrivals
                .iter()
                .filter_map(|a| match a {
                    Arrival::Request(m) if m.target == b"/" => Some(m.body.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(bodies, [b"abc".to_vec()], "{method}: {:?}", seen.arrivals);
        }
    }
    s.gw.shutdown().await;
}

/// Found by the run above: chunked named twice was read as chunked once (a strict
/// reader refuses it or decodes twice), and `gzip, chunked` reached Deploy as chunked
/// alone, its body still gzip-coded. Both are refused, and nothing after them on that
/// connection is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_one_chunked_are_refused() {
    let s = setup().await;
    let token = &s.token;
    for (codings, status) in [
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            400,
        ),
        ("Transfer-Encoding: chunked, Chunked", 400),
        ("Transfer-Encoding: gzip, chunked", 501),
        (
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
            501,
        ),
    ] {
        // Also with an invalid Host, and to the gateway's own routes.
        for (host, target) in [
            ("deploy.test", "/"),
            ("", "/"),
            ("deploy.test", "/patgate/health"),
        ] {
            let request = format!(
                "POST {target} HTTP/1.1\r\nHost: {host}\r\nx-deploy-personal-token: {token}\r\n{codings}\r\n\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: deploy.test\r\n\r\n"
            );
            let seen = through_gateway(s.gw.addr, &s.recorder, request.as_bytes()).await;
            assert_eq!(seen.statuses, [status], "{codings} {host:?} {target}");
            assert!(seen.arrivals.is_empty(), "{codings}: {:?}", seen.arrivals);
        }
    }
    s.gw.shutdown().await;
}

/// Found by the run above: `GET a HTTP/1.1` with `Host: deploy.test` was read as an
/// absolute form, and Deploy was sent `GET /` with `Host: a`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_form_target_is_refused_not_made_the_host() {
    let s = setup().await;
    let token = &s.token;
    for target in ["a", "other.test:4516", "deploy.test"] {
        for credential in [format!("x-deploy-personal-token: {token}"), String::new()] {
            let request =
                format!("GET {target} HTTP/1.1\r\nHost: deploy.test\r\n{credential}\r\n\r\n");
            let seen = through_gateway(s.gw.addr, &s.recorder, request.as_bytes()).await;
            assert_eq!(seen.statuses, [400], "{target}");
            assert!(seen.arrivals.is_empty(), "{target}: {:?}", seen.arrivals);
        }
    }
    // The absolute form still names the host.
    let request = format!(
        "GET http://other.test/x HTTP/1.1\r\nHost: deploy.test\r\nx-deploy-personal-token: {token}\r\n\r\n"
    );
    let seen = through_gateway(s.gw.addr, &s.recorder, request.as_bytes()).await;
    assert_eq!(seen.statuses, [200]);
    assert!(
        matches!(&seen.arrivals[..], [Arrival::Request(m)] if m.target == b"/x"),
        "{:?}",
        seen.arrivals
    );
    s.gw.shutdown().await;
}
