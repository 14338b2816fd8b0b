//! Runs every target on its own task, each sample under a deadline, and folds the results into
//! one published [`Published`] value. A slow or hung target delays nobody: `/metrics` serves the
//! last published value, which is replaced whenever any target reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Target};
use crate::exporters::prometheus;
use crate::health::{self, HealthReport};
use crate::model::TargetSample;
use crate::sources::{self, ErrorKind, SampleError};
use crate::status::{Snapshot, TargetStatus};
use crate::store::Store;

/// The longest a report waits for the other targets of its tick before it is published.
const COALESCE_LIMIT: Duration = Duration::from_millis(250);

/// Everything the exporters serve, rendered once per change.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    /// The Prometheus exposition of `snapshot`.
    pub metrics: String,
    pub health: HealthReport,
}

impl Published {
    fn of(snapshot: Snapshot) -> Published {
        Published {
            metrics: prometheus::render(&snapshot),
            health: health::report(&snapshot),
            snapshot,
        }
    }
}

/// The running agent; dropping it stops every task.
pub struct Agent {
    published: watch::Receiver<Arc<Published>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Starts sampling every target of `config` (must run inside a tokio runtime).
    pub fn start(config: &Config) -> Agent {
        let targets: Vec<TargetStatus> = config.targets.iter().map(initial_status).collect();
        let (publish, published) = watch::channel(Arc::new(Published::of(Snapshot {
            targets: targets.clone(),
        })));
        let (reports, inbox) = mpsc::channel(config.targets.len().max(1) * 4);
        let mut tasks: Vec<JoinHandle<()>> = config
            .targets
            .iter()
            .enumerate()
            .map(|(index, target)| {
                tokio::spawn(sample_loop(
                    index,
                    target.clone(),
                    config.sample_interval,
                    config.sample_timeout,
                    reports.clone(),
                ))
            })
            .collect();
        let aggregator = Aggregator {
            store: Store::new(config.window, config.rate_window),
            config: config.targets.clone(),
            targets,
            publish,
        };
        let coalesce = (config.sample_interval / 10).min(COALESCE_LIMIT);
        tasks.push(tokio::spawn(aggregator.run(inbox, coalesce)));
        Agent { published, tasks }
    }

    /// The latest published state.
    pub fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// A receiver that sees every new published state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.published.clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn initial_status(target: &Target) -> TargetStatus {
    TargetStatus {
        name: target.name.clone(),
        source: target.source.kind(),
        endpoint: target.connection.endpoint().to_string(),
        labels: target.labels.clone(),
        up: false,
        samples: 0,
        last_duration_seconds: None,
        last_success_unix_seconds: None,
        errors: BTreeMap::new(),
        last_error: None,
        warnings: Vec::new(),
        server: None,
        pools: Vec::new(),
    }
}

struct Report {
    index: usize,
    at: Instant,
    duration: Duration,
    outcome: Result<TargetSample, SampleError>,
}

async fn sample_loop(
    index: usize,
    target: Target,
    interval: Duration,
    deadline: Duration,
    reports: mpsc::Sender<Report>,
) {
    let mut source = sources::build(&target, deadline);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let start = Instant::now();
        let outcome = match tokio::time::timeout(deadline, source.sample()).await {
            Ok(Ok(sample)) => Ok(sample),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(SampleError {
                kind: ErrorKind::Timeout,
                message: format!(
                    "no answer within {} ({})",
                    humantime::format_duration(deadline),
                    target.connection.endpoint()
                ),
            }),
        };
        if outcome.is_err() {
            // A half-read answer or a hung peer: start over on a fresh connection.
            source.reset();
        }
        let report = Report {
            index,
            at: start,
            duration: start.elapsed(),
            outcome,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}

struct Aggregator {
    store: Store,
    config: Vec<Target>,
    targets: Vec<TargetStatus>,
    publish: watch::Sender<Arc<Published>>,
}

impl Aggregator {
    /// Applies reports and publishes. Targets sampled on the same tick report close together,
    /// and rendering costs far more than a sample, so after a report it waits up to `coalesce`
    /// for the other targets and renders once for all of them, off the async workers.
    async fn run(mut self, mut inbox: mpsc::Receiver<Report>, coalesce: Duration) {
        let mut reported = vec![false; self.targets.len()];
        while let Some(report) = inbox.recv().await {
            reported[report.index] = true;
            self.apply(report);
            let deadline = tokio::time::Instant::now() + coalesce;
            while reported.iter().any(|r| !r) {
                match tokio::time::timeout_at(deadline, inbox.recv()).await {
                    Ok(Some(report)) => {
                        reported[report.index] = true;
                        self.apply(report);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reported.fill(false);
            let snapshot = Snapshot {
                targets: self.targets.clone(),
            };
            match tokio::task::spawn_blocking(move || Published::of(snapshot)).await {
                Ok(published) => {
                    self.publish.send_replace(Arc::new(published));
                }
                Err(error) => tracing::error!(%error, "rendering the snapshot failed"),
            }
        }
    }

    fn apply(&mut self, report: Report) {
        let config = &self.config[report.index];
        let status = &mut self.targets[report.index];
        status.samples += 1;
        status.last_duration_seconds = Some(report.duration.as_secs_f64());
        match report.outcome {
            Ok(sample) => {
                if !status.up {
                    tracing::info!(target_name = %status.name, endpoint = %status.endpoint, "target is up");
                }
                for warning in sample
                    .warnings
                    .iter()
                    .filter(|w| !status.warnings.contains(w))
                {
                    tracing::warn!(target_name = %status.name, "{warning}");
                }
                self.store
                    .record(&status.name, report.at, &sample, config.limits);
                status.up = true;
                status.last_error = None;
                status.last_success_unix_seconds = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64());
                status.warnings = sample.warnings;
                status.server = Some(sample.server);
                status.pools = self.store.figures(&status.name);
            }
            Err(error) => {
                if status.up || status.samples == 1 {
                    tracing::warn!(target_name = %status.name, error = %error, "target is down");
                } else {
                    tracing::debug!(target_name = %status.name, error = %error, "target still down");
                }
                status.up = false;
                *status.errors.entry(error.kind).or_default() += 1;
                status.last_error = Some(error.to_string());
                status.pools.clear();
                status.server = None;
            }
        }
    }
}
