//! `poolwatch run`: the agent, with hot reload of its config and rule files.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::TargetArgs;
use crate::exporters::http;
use crate::reload::{self, Reloader};
use crate::scheduler::{Agent, Options};

pub fn run(args: TargetArgs, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let mut config = match args.load() {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if config.targets.is_empty() {
        eprintln!("no targets: give --config FILE or --target TYPE=URL|PATH");
        return Ok(ExitCode::from(2));
    }
    let (rules, rule_paths) = match args.rules(&config) {
        Ok(found) => found,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let rule_count = rules.rule_count();
        let agent = Agent::start(&config, Options { rules, hold: true });
        tracing::info!(
            %address,
            targets = config.targets.len(),
            rules = rule_count,
            interval = %humantime::format_duration(config.sample_interval),
            "poolwatch serving /metrics, /healthz, /api/v1/health"
        );
        let mut reloader = Reloader::new(args, rule_paths);
        let (_watcher, mut changes) =
            reload::watch(&reloader.paths()).context("watching the config and rule files")?;
        let reloads = async {
            while reload::settled(&mut changes).await {
                reloader.reload(&agent);
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            served = http::serve(listener, agent.subscribe()) => served.context("serving HTTP")?,
            _ = reloads => {}
            _ = shutdown() => tracing::info!("shutting down"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
