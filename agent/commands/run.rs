//! `poolwatch run`: the agent, with hot reload of its config and rule files, the OTLP receiver's
//! listeners when it is on, and the sender of its alerts to Alertmanager beside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::web::WebConfig;
use crate::config::{AlertingArgs, TargetArgs};
use crate::exporters::alertmanager::{Notifier, Settings};
use crate::exporters::{http, otlp};
use crate::receiver::{self, Receiver};
use crate::reload::{self, Reloader};
use crate::scheduler::{Agent, Options};

pub fn run(
    args: TargetArgs,
    alerting: AlertingArgs,
    listen: Option<SocketAddr>,
    web_config_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut config = match alerting.load(&args) {
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
            "no targets and the OTLP receiver is off: give --config FILE or --target \
             TYPE=URL|PATH, or enable otlp_receiver"
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
    let web_path = web_config_file.or_else(|| config.web_config_file.clone());
    let web = match &web_path {
        None => WebConfig::default(),
        Some(path) => match WebConfig::load(path) {
            Ok(web) => web,
            Err(problems) => {
                eprintln!("{problems}");
                return Ok(ExitCode::from(2));
            }
        },
    };
    crate::memory::one_arena();
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
            Some(_) => (
                bind(receiving.grpc_listen).await?,
                bind(receiving.http_listen).await?,
            ),
            None => (None, None),
        };
        let (web_updates, web_configs) = tokio::sync::watch::channel(Arc::new(web.clone()));
        // The separate OTLP/HTTP listener is under the same web config as the main one; the
        // gRPC one is not (yet): the README says so.
        let grpc = serve_optional(grpc_listener, &receiver, "OTLP/gRPC", receiver::grpc::serve);
        let otlp_web = web_configs.clone();
        let otlp_http = serve_optional(http_listener, &receiver, "OTLP/HTTP", |l, r| {
            receiver::http::serve(l, r, otlp_web)
        });
        let rule_count = rules.rule_count();
        // The files read above are loaded: each kind's reload series start at 1.
        let loaded = [
            ("config", args.config.is_some()),
            ("rules", !rule_paths.is_empty()),
            ("web_config", web_path.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, read)| read.then_some(kind))
        .collect();
        let agent = Agent::start(
            &config,
            Options {
                rules,
                hold: true,
                receiver: receiver.clone(),
                loaded,
            },
        );
        let exporter = match config.otlp.clone() {
            Some(settings) => Some(
                otlp::start(settings, address, agent.subscribe())
                    .context("starting the OTLP exporter")?,
            ),
            None => None,
        };
        tracing::info!(
            %address,
            tls = web.tls.is_some(),
            basic_auth = !web.users.is_empty(),
            targets = config.targets.len(),
            rules = rule_count,
            interval = %humantime::format_duration(config.sample_interval),
            otlp_receiver = receiver.is_some(),
            "poolwatch serving /metrics, /healthz, /api/v1/health"
        );
        let notifier = Notifier::start(Settings::new(&config.alerting, address), agent.subscribe());
        let mut reloader = Reloader::new(args, alerting, rule_paths);
        if let Some(path) = web_path {
            reloader = reloader.with_web_config(path, web_updates);
        }
        let (_watcher, mut changes) =
            reload::watch(&reloader.paths()).context("watching the config and rule files")?;
        let reloads = async {
            while reload::settled(&mut changes).await {
                if let Some(config) = reloader.reload(&agent) {
                    notifier.reconfigure(Settings::new(&config.alerting, address));
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            served = http::serve(listener, agent.subscribe(), receiver.clone(), web_configs) => {
                served.context("serving HTTP")?
            }
            served = grpc => served?,
            served = otlp_http => served?,
            _ = reloads => {}
            _ = shutdown() => tracing::info!("shutting down"),
        }
        if let Some(exporter) = exporter {
            exporter.shutdown().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Serves the receiver on `listener` if there is one, else waits forever.
async fn serve_optional<F, E>(
    listener: Option<tokio::net::TcpListener>,
    receiver: &Option<Arc<Receiver>>,
    what: &'static str,
    serve: impl FnOnce(tokio::net::TcpListener, Arc<Receiver>) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let (Some(listener), Some(receiver)) = (listener, receiver) else {
        return std::future::pending().await;
    };
    tracing::info!(address = %listener.local_addr()?, "{what} receiver listening");
    serve(listener, receiver.clone())
        .await
        .with_context(|| format!("serving {what}"))
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
