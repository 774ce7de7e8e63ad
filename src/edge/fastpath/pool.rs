//! This worker's idle keep-alive connections to Deploy.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{Failure, Forwarder};

/// A connection idle for longer is not reused: a firewall may have dropped it silently.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Forwarder {
    /// An idle connection that is still open, if any.
    pub(super) fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            self.metrics
                .local()
                .upstream_pooled
                .fetch_sub(1, Ordering::Relaxed);
            if since.elapsed() < IDLE_TIMEOUT && still_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    pub(super) fn checkin(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push((stream, Instant::now()));
            self.metrics
                .local()
                .upstream_pooled
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) async fn connect(&self) -> Result<TcpStream, Failure> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                Failure::Unreachable(format!("connecting to {}: timed out", self.address))
            })?
            .map_err(|e| Failure::Unreachable(format!("connecting to {}: {e}", self.address)))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Whether an idle connection is still usable: nothing has arrived on it (Deploy
/// closing it, or stray bytes). Costs a system call only when the event loop has seen
/// it become readable.
pub(super) fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}
