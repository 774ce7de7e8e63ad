//! `patgate`: see `patgate --help` and README.md.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc instead of the system allocator: with a dozen threads allocating (workers,
/// the database threads) glibc's per-thread arenas fragment until the resident size is
/// a multiple of what is in use; mimalloc keeps it close and is faster per call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use patgate::cli::{self, Admin, Cli, Command};
use patgate::config::{redact_url, Config};
use patgate::edge::server;
use patgate::logging;

fn main() -> ExitCode {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
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
            eprintln!(
                "patgate: {}; see patgate --help",
                message.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let path = cli::config_path(args.config);
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("patgate: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("patgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.command {
        Command::CheckConfig => {
            println!(
                "configuration {} is valid: listen {}, upstream {}, identity {:?}, database {}",
                path.display(),
                config.listen,
                config.upstream.url,
                config.upstream.identity.mode,
                redact_url(&config.database.url)
            );
            Ok(())
        }
        Command::Serve => {
            let _guard = logging::init(&config.log);
            runtime.block_on(serve(config))
        }
        Command::Token(t) => runtime.block_on(admin(&config, Admin::Token(t))),
        Command::User(u) => runtime.block_on(admin(&config, Admin::User(u))),
        Command::JwtKey(k) => runtime.block_on(admin(&config, Admin::JwtKey(k))),
        Command::TokenKey(k) => runtime.block_on(admin(&config, Admin::TokenKey(k))),
        Command::CheckDeploy { user } => {
            runtime.block_on(admin(&config, Admin::CheckDeploy { user }))
        }
        Command::Notify(n) => runtime.block_on(async {
            let line = cli::run_notify(&config, n).await?;
            println!("{line}");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn admin(config: &Config, command: Admin) -> anyhow::Result<()> {
    let output = cli::run_admin(config, command).await?;
    println!("{output}");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut running = server::start(config).await?;
    tokio::select! {
        result = running.wait() => return result,
        _ = shutdown_signal() => tracing::info!("shutdown signal received"),
    }
    running.shutdown().await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
