//! Log set-up. Lines go to stderr through a non-blocking writer, so a slow terminal or
//! log collector never stalls a request; under extreme load lines may be dropped
//! rather than requests slowed.
//!
//! No log line carries a token, password or credential header: requests are logged by
//! method and path only (never the query string or headers).
//!
//! May import: `config` and `core`.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::Log;

/// Changes the running log level (a reload of `log.level`).
#[derive(Clone)]
pub struct LogLevel(reload::Handle<EnvFilter, Registry>);

impl LogLevel {
    /// `level` is validated with the configuration.
    pub fn set(&self, level: &str) -> Result<(), String> {
        self.0
            .reload(EnvFilter::new(level))
            .map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber; keep the guard alive until exit to flush.
pub fn init(settings: &Log) -> (WorkerGuard, LogLevel) {
    // Buffered: the writer thread drains every pending line, then flushes once, so a
    // busy access log costs one system call per batch rather than one per line.
    let buffered = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(buffered);
    // Validated with the config; `PATGATE_LOG__LEVEL` overrides it like any key.
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&settings.level));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    if settings.json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
    (guard, LogLevel(handle))
}
