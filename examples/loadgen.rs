//! Load generator for the benchmarks in `bench/`: keep-alive HTTP/1.1 connections,
//! open-loop at a fixed rate (or closed-loop as fast as possible with `--rate 0`),
//! per-request latency, one JSON line of results on stdout.
//!
//! Latency is measured from when a request was due, unless its connection was idle
//! and only the timer's granularity delayed it: then from when it was sent. So a server
//! that falls behind is charged for the queue it causes (no coordinated omission).
//!
//! ```text
//! loadgen --url http://127.0.0.1:4516/x --rate 5000 --duration 10 --connections 32 \
//!         --tokens tokens.txt --mode fixed|unique|cycle|unknown|malformed|none [--source-ip 127.0.0.2]
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The first token of the file on every request (cache hits).
    Fixed,
    /// A different token of the file on every request (cache misses), in order.
    Unique,
    /// The file's tokens in turn, over and over (cache hits after the first round).
    Cycle,
    /// Random well-formed tokens nobody issued.
    Unknown,
    /// Tokens with a broken checksum.
    Malformed,
    /// No credentials.
    None,
}

struct Args {
    url: http::Uri,
    rate: f64,
    duration: Duration,
    connections: usize,
    tokens: Vec<String>,
    mode: Mode,
    source_ip: Option<IpAddr>,
    max_requests: Option<u64>,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut rate = 0.0;
    let mut duration = Duration::from_secs(10);
    let mut connections = 32;
    let mut tokens = Vec::new();
    let mut mode = Mode::None;
    let mut source_ip = None;
    let mut max_requests = None;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => url = Some(value().parse().expect("--url")),
            "--rate" => rate = value().parse().expect("--rate"),
            "--duration" => {
                duration = Duration::from_secs_f64(value().parse().expect("--duration"))
            }
            "--connections" => connections = value().parse().expect("--connections"),
            "--max-requests" => max_requests = Some(value().parse().expect("--max-requests")),
            "--tokens" => {
                tokens = std::fs::read_to_string(value())
                    .expect("--tokens file")
                    .lines()
                    .map(str::to_string)
                    .collect()
            }
            "--source-ip" => source_ip = Some(value().parse().expect("--source-ip")),
            "--mode" => {
                mode = match value().as_str() {
                    "fixed" => Mode::Fixed,
                    "unique" => Mode::Unique,
                    "cycle" => Mode::Cycle,
                    "unknown" => Mode::Unknown,
                    "malformed" => Mode::Malformed,
                    "none" => Mode::None,
                    other => panic!("unknown --mode {other}"),
                }
            }
            other => panic!("unknown flag {other}"),
        }
    }
    Args {
        url: url.expect("--url is required"),
        rate,
        duration,
        connections,
        tokens,
        mode,
        source_ip,
        max_requests,
    }
}

fn token_for(args: &Args, n: u64) -> Option<String> {
    match args.mode {
        Mode::Fixed => Some(args.tokens[0].clone()),
        Mode::Unique => args.tokens.get(n as usize).cloned(),
        Mode::Cycle => Some(args.tokens[n as usize % args.tokens.len()].clone()),
        Mode::Unknown => Some(
            patgate::core::token::PlainToken::generate()
                .expose()
                .to_string(),
        ),
        Mode::Malformed => {
            let mut t = patgate::core::token::PlainToken::generate()
                .expose()
                .to_string();
            t.truncate(t.len() - 6);
            t.push_str("AAAAAA");
            Some(t)
        }
        Mode::None => None,
    }
}

#[derive(Default)]
struct Shared {
    next: AtomicU64,
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let shared = Arc::new(Shared::default());
    let start = Instant::now() + Duration::from_millis(50);
    let deadline = start + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let args = args.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            connection(args, shared, start, deadline).await
        }));
    }
    let mut latencies: Vec<u32> = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = 0u64;
    for task in tasks {
        let result = task.await.expect("connection task");
        latencies.extend(result.latencies_us);
        for (s, n) in result.statuses {
            *statuses.entry(s).or_default() += n;
        }
        errors += result.errors;
    }
    let elapsed = (Instant::now().min(deadline + Duration::from_secs(5)) - start).as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    let done = latencies.len() as u64;
    let out = serde_json::json!({
        "requests": done,
        "errors": errors,
        "rps": (done as f64 / elapsed.max(0.001)).round(),
        "status": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": latencies.last().copied().unwrap_or(0),
    });
    println!("{out}");
}

#[derive(Default)]
struct ConnResult {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

async fn connect(args: &Args) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let host = args.url.host()?;
    let port = args.url.port_u16().unwrap_or(80);
    let addr: SocketAddr = format!("{host}:{port}").parse().ok()?;
    let socket = TcpSocket::new_v4().ok()?;
    if let Some(ip) = args.source_ip {
        socket.bind(SocketAddr::new(ip, 0)).ok()?;
    }
    let stream = socket.connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn connection(
    args: Arc<Args>,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
) -> ConnResult {
    let mut result = ConnResult::default();
    let mut sender = None;
    let mut free_since = Instant::now();
    let path = args
        .url
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or("/".into());
    let authority = args
        .url
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if args.max_requests.is_some_and(|max| n >= max) {
            break;
        }
        let due = if args.rate > 0.0 {
            start + Duration::from_secs_f64(n as f64 / args.rate)
        } else {
            Instant::now().max(start)
        };
        if due >= deadline || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // A connection that was free when the request fell due is charged from when it
        // actually sent (the timer's millisecond granularity is ours, not the server's);
        // one still busy then is charged from the due time, queueing included.
        let began = if free_since <= due {
            Instant::now()
        } else {
            due
        };
        if sender.is_none() {
            sender = connect(&args).await;
            if sender.is_none() {
                result.errors += 1;
                free_since = Instant::now();
                continue;
            }
        }
        let s = sender.as_mut().expect("connected");
        if s.ready().await.is_err() {
            sender = None;
            result.errors += 1;
            free_since = Instant::now();
            continue;
        }
        let mut req = http::Request::get(path.as_str()).header("host", authority.as_str());
        if let Some(token) = token_for(&args, n) {
            req = req.header("x-deploy-personal-token", token);
        }
        match s
            .send_request(req.body(Empty::new()).expect("request"))
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                let now = Instant::now();
                result
                    .latencies_us
                    .push((now - began).as_micros().min(u32::MAX as u128) as u32);
                *result.statuses.entry(status).or_default() += 1;
                free_since = now;
            }
            Err(_) => {
                result.errors += 1;
                sender = None;
                free_since = Instant::now();
            }
        }
    }
    result
}
