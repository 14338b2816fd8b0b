//! `poolwatch run`: the agent.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::TargetArgs;
use crate::exporters::http;
use crate::scheduler::Agent;

pub fn run(args: &TargetArgs, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
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
        eprintln!("no targets: give --config FILE or --target TYPE=URL");
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let agent = Agent::start(&config);
        tracing::info!(
            %address,
            targets = config.targets.len(),
            interval = %humantime::format_duration(config.sample_interval),
            "poolwatch serving /metrics, /healthz, /api/v1/health"
        );
        tokio::select! {
            served = http::serve(listener, agent.subscribe()) => served.context("serving HTTP")?,
            _ = shutdown() => tracing::info!("shutting down"),
        }
        drop(agent);
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
