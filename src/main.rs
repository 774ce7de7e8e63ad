//! `patgate`: see `patgate --help` and README.md.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc instead of the system allocator: with a dozen threads allocating (workers,
/// the database threads) glibc's per-thread arenas fragment until the resident size is
/// a multiple of what is in use; mimalloc keeps it close and is faster per call. Built
/// without transparent huge pages (`no_thp`): with them, the idle process was 48 MiB
/// resident instead of 28.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use patgate::app::{self, preflight};
use patgate::cli::{self, say, Admin, Cli, Command};
use patgate::config::{redact_url, Config, ConfigError};
use patgate::logging;

fn main() -> ExitCode {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version; a closed stdout is not worth a panic.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, as for every other error.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let message = message.join(" ");
            say(&format!(
                "{}; see patgate --help",
                message.trim_start_matches("error: ")
            ));
            return ExitCode::from(2);
        }
    };
    let path = cli::config_path(args.config);
    if let Command::DemoDeploy(demo) = &args.command {
        return demo_deploy(&path, demo);
    }
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            say(&e.to_string());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let admin = |command: Admin, out: &mut dyn std::io::Write| {
        runtime.block_on(cli::run_admin_to(&config, command, out))
    };
    let result = match args.command {
        Command::CheckConfig { connect } => runtime.block_on(check_config(&config, connect)),
        Command::Reload => {
            reload(&config).and_then(|line| Ok(cli::write_line(&mut stdout, &line)?))
        }
        Command::Serve => match preflight::check(&config) {
            Err(e) => Err(e.into()),
            Ok(notes) => {
                let (_guard, log_level) = logging::init(&config.log);
                for note in notes {
                    tracing::info!("{note}");
                }
                runtime.block_on(serve(config.clone(), log_level))
            }
        },
        Command::Token(t) => admin(Admin::Token(t), &mut stdout),
        Command::User(u) => admin(Admin::User(u), &mut stdout),
        Command::JwtKey(k) => admin(Admin::JwtKey(k), &mut stdout),
        Command::TokenKey(k) => admin(Admin::TokenKey(k), &mut stdout),
        Command::CheckDeploy { user } => admin(Admin::CheckDeploy { user }, &mut stdout),
        Command::TrustPolicy(t) => admin(Admin::TrustPolicy(t), &mut stdout),
        Command::ServiceAccount(c) => admin(Admin::ServiceAccount(c), &mut stdout),
        Command::DemoDeploy(_) => unreachable!("demo-deploy runs before the configuration is read"),
        Command::Notify(n) => runtime.block_on(async {
            let line = cli::run_notify(&config, n).await?;
            cli::write_line(&mut stdout, &line)?;
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("{e:#}"));
            if ConfigError::is_cause_of(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `demo-deploy`: the stand-in believes what the gateway of this configuration
/// asserts, and listens where it expects Deploy. Without a usable configuration it
/// takes the defaults (header mode, `X-Deploy-User`, 127.0.0.1:14516).
fn demo_deploy(path: &std::path::Path, args: &cli::DemoArgs) -> ExitCode {
    let users = match cli::demo_users(args) {
        Ok(users) => users,
        Err(e) => {
            say(&e);
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            say(&format!(
                "demo-deploy: {e}; using the defaults (header mode, X-Deploy-User)"
            ));
            match Config::from_yaml(DEMO_DEFAULTS, &Default::default()) {
                Ok(config) => config,
                Err(e) => {
                    say(&e.to_string());
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let listen = args
        .listen
        .unwrap_or_else(|| patgate::demo::default_listen(Some(&config)));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let identity = config.upstream.identity.clone();
    let result = runtime.block_on(async {
        tokio::select! {
            result = patgate::demo::run(listen, users, identity) => result,
            _ = shutdown_signal() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// The configuration `demo-deploy` assumes when none can be read.
const DEMO_DEFAULTS: &str = "listen: 127.0.0.1:4516\nupstream:\n  url: http://127.0.0.1:14516\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: sqlite://unused.db\n";

/// `check-config`: every check `serve` makes before it opens a socket; with `connect`,
/// the database and Deploy are reached too.
async fn check_config(config: &Config, connect: bool) -> anyhow::Result<()> {
    let notes = preflight::check(config)?;
    let mut lines = vec![format!(
        "configuration {} is valid: listen {}, upstream {}, identity {:?}, database {}",
        config.source_text(),
        config.listen,
        config.upstream.url,
        config.upstream.identity.mode,
        redact_url(&config.database.url)
    )];
    lines.extend(notes);
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        cli::write_line(&mut stdout, &line)?;
    }
    if connect {
        cli::write_line(&mut stdout, &preflight::reach_database(config).await?)?;
        cli::write_line(&mut stdout, &preflight::reach_deploy(config).await?)?;
    }
    Ok(())
}

async fn serve(config: Config, log_level: logging::LogLevel) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).expect("installing the SIGHUP handler");
    let mut running = app::start(config.clone()).await?;
    running.reloader.set_log_level(log_level);
    let pid_file = config.pid_file.clone();
    if let Some(path) = &pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("pid_file {}: {e}", path.display()))?;
    }
    tokio::spawn(app::first_steps(config, running.local_addr));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            result = running.wait() => break Some(result),
            _ = &mut shutdown => {
                tracing::info!("shutdown signal received");
                break None;
            }
            _ = hangup.recv() => reloaded(running.reloader.reload_file().await),
        }
    };
    let result = match result {
        Some(result) => result,
        None => running.shutdown().await,
    };
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Logs what a reload did: applied keys, keys that wait for a restart, or why the new
/// file was refused (the old settings keep serving).
fn reloaded(result: anyhow::Result<app::reload::Reloaded>) {
    match result {
        Ok(done) => {
            if done.applied.is_empty() && done.needs_restart.is_empty() {
                tracing::info!("configuration reloaded: nothing changed (the TLS certificate, if any, was read again)");
            } else {
                tracing::info!(applied = ?done.applied, "configuration reloaded");
            }
            if !done.needs_restart.is_empty() {
                tracing::warn!(
                    keys = ?done.needs_restart,
                    "these changes need a restart and were not applied; the old values stay in use"
                );
            }
        }
        Err(e) => tracing::error!(
            "configuration reload refused, nothing changed; the previous settings keep serving: {e:#}"
        ),
    }
}

/// `patgate reload`: SIGHUP to the gateway whose process id is in `pid_file`.
fn reload(config: &Config) -> anyhow::Result<String> {
    let Some(path) = &config.pid_file else {
        return Err(ConfigError::new(
            "pid_file is not set: set it (the gateway writes its process id there) or send the gateway SIGHUP yourself",
        )
        .into());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("pid_file {}: {e}; is the gateway running?", path.display())
    })?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("pid_file {}: not a process id", path.display()))?;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .map_err(|e| anyhow::anyhow!("kill -HUP {pid}: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "kill -HUP {pid} failed: no such process? (pid_file {})",
        path.display()
    );
    Ok(format!(
        "sent SIGHUP to the gateway (pid {pid}); its log says what was applied"
    ))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
