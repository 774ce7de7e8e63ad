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
use tracing_subscriber::EnvFilter;

use crate::config::Log;

/// Installs the global subscriber; keep the guard alive until exit to flush.
pub fn init(settings: &Log) -> WorkerGuard {
    // Buffered: the writer thread drains every pending line, then flushes once, so a
    // busy access log costs one system call per batch rather than one per line.
    let buffered = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(buffered);
    // Validated with the config; `PATGATE_LOG__LEVEL` overrides it like any key.
    let filter = EnvFilter::new(&settings.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if settings.json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}
