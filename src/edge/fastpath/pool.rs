//! This worker's idle keep-alive connections to Deploy.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{Failure, Forwarder, Target};

/// A connection idle for longer is not reused: a firewall may have dropped it silently.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Forwarder {
    /// An idle connection to `target` that is still open, if any.
    pub(super) fn checkout(&self, target: &Target) -> Option<TcpStream> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.generation != target.generation {
            return None;
        }
        while let Some((stream, since)) = pool.idle.pop() {
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

    /// Keeps a connection to `target` for reuse, unless a reload moved Deploy since.
    pub(super) fn checkin(&self, stream: TcpStream, target: &Target) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.generation == target.generation && pool.idle.len() < target.max_idle {
            pool.idle.push((stream, Instant::now()));
            self.metrics
                .local()
                .upstream_pooled
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) async fn connect(&self, target: &Target) -> Result<TcpStream, Failure> {
        let address = &target.address;
        let stream = tokio::time::timeout(target.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| Failure::Unreachable(format!("connecting to {address}: timed out")))?
            .map_err(|e| Failure::Unreachable(format!("connecting to {address}: {e}")))?;
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
