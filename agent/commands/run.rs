//! `poolwatch run`: the agent, with hot reload of its config and rule files, and the OTLP
//! receiver's listeners when it is on.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::TargetArgs;
use crate::exporters::http;
use crate::receiver::{self, Receiver};
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
        eprintln!(
            "no targets and the OTLP receiver is off: give --config FILE or --target TYPE=URL, \
             or enable otlp_receiver"
        );
        return Ok(ExitCode::from(2));
    }
    let (rules, rule_paths) = match args.rules(&config) {
        Ok(found) => found,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::from(2));
        }
    };
    crate::telemetry::install();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let receiving = &config.otlp_receiver;
        let receiver = receiving.enabled.then(|| Receiver::new(receiving));
        let bind = |address: Option<SocketAddr>| async move {
            match address {
                Some(a) => tokio::net::TcpListener::bind(a)
                    .await
                    .map(Some)
                    .with_context(|| format!("listening on {a}")),
                None => Ok(None),
            }
        };
        let (grpc_listener, http_listener) = match &receiver {
            Some(_) => (bind(receiving.grpc_listen).await?, bind(receiving.http_listen).await?),
            None => (None, None),
        };
        let grpc = async {
            match (grpc_listener, &receiver) {
                (Some(l), Some(r)) => {
                    tracing::info!(address = %l.local_addr()?, "OTLP/gRPC receiver listening");
                    receiver::grpc::serve(l, r.clone()).await.context("serving OTLP/gRPC")
                }
                _ => std::future::pending().await,
            }
        };
        let otlp_http = async {
            match (http_listener, &receiver) {
                (Some(l), Some(r)) => {
                    tracing::info!(address = %l.local_addr()?, "OTLP/HTTP receiver listening");
                    receiver::http::serve(l, r.clone()).await.context("serving OTLP/HTTP")
                }
                _ => std::future::pending().await,
            }
        };
        let rule_count = rules.rule_count();
        let agent = Agent::start(
            &config,
            Options {
                rules,
                hold: true,
                receiver: receiver.clone(),
            },
        );
        tracing::info!(
            %address,
            targets = config.targets.len(),
            rules = rule_count,
            interval = %humantime::format_duration(config.sample_interval),
            otlp_receiver = receiver.is_some(),
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
            served = http::serve(listener, agent.subscribe(), receiver.clone()) => served.context("serving HTTP")?,
            served = grpc => served?,
            served = otlp_http => served?,
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
