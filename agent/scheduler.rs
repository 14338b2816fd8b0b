//! Runs every target on its own task, each sample under a deadline, and folds the results into
//! one published [`Published`] value: the series window is fed, the rules evaluated and the
//! exposition model's samples made (the text exposition and health are made when first read).
//! A slow or hung target delays nobody: `/metrics` serves the last published value. Rule and
//! config reloads arrive here too; a reload that fails leaves the last good version running.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Target};
use crate::exposition::{self, Exposer};
use crate::model::{SourceKind, TargetSample};
use crate::receiver::Receiver;
use crate::rules::alerts::RuleEngine;
use crate::rules::files::RuleSet;
use crate::series::{Millis, SeriesStore};
use crate::sources::{self, ErrorKind, SampleError};
use crate::status::{AgentStatus, Published, Snapshot, TargetStatus};
use crate::store::Store;
use crate::telemetry;

/// The longest a report waits for the other targets of its tick before it is published.
const COALESCE_LIMIT: Duration = Duration::from_millis(250);

/// How the agent judges pools.
#[derive(Clone, Debug)]
pub struct Options {
    pub rules: RuleSet,
    /// Whether a rule's `for` is awaited; a one-shot `check` has no history to wait on.
    pub hold: bool,
    /// The OTLP receiver whose pools the built-in otlp target reports.
    pub receiver: Option<Arc<Receiver>>,
    /// The kinds of file (`config`, `rules`, `web_config`) loaded at start: their first load is
    /// a successful one, so the reload series exist from the first publish.
    pub loaded: Vec<&'static str>,
}

/// What can be changed while the agent runs.
enum Control {
    Config(Box<Config>),
    Rules(RuleSet),
    Failed { kind: &'static str, error: String },
    Succeeded { kind: &'static str },
}

/// The running agent; dropping it stops every task.
pub struct Agent {
    published: watch::Receiver<Arc<Published>>,
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

impl Agent {
    /// Starts sampling every target of `config` (must run inside a tokio runtime).
    pub fn start(config: &Config, options: Options) -> Agent {
        let (publish, published) = watch::channel(Arc::new(Published::default()));
        let (control, controls) = mpsc::unbounded_channel();
        let (reports, inbox) = mpsc::channel(256);
        let mut aggregator = Aggregator {
            // The pool window only feeds rates; the rules' history is the series window.
            store: Store::new(
                config.rate_window + config.sample_interval,
                config.rate_window,
            ),
            series: SeriesStore::for_reads(
                config.window.as_millis() as Millis,
                options.rules.reads(),
            ),
            engine: RuleEngine::new(options.rules),
            receiver: options.receiver,
            exposer: Exposer::default(),
            target_labels: Vec::new(),
            hold: options.hold,
            config: config.clone(),
            targets: Vec::new(),
            tasks: Vec::new(),
            generation: 0,
            reports,
            agent: AgentStatus::default(),
            publish,
        };
        aggregator.agent.rules_loaded = aggregator.engine.rules().rule_count();
        telemetry::rules_loaded(aggregator.agent.rules_loaded);
        for kind in options.loaded {
            aggregator.reload_succeeded(kind);
        }
        aggregator.spawn_targets(BTreeMap::new());
        aggregator.publish_now(None);
        let task = tokio::spawn(aggregator.run(inbox, controls));
        Agent {
            published,
            control,
            task,
        }
    }

    /// The latest published state.
    pub fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// A receiver that sees every new published state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.published.clone()
    }

    /// Applies a new config: targets restart, windows and alert states stay.
    pub fn reload_config(&self, config: Config) {
        let _ = self.control.send(Control::Config(Box::new(config)));
    }

    /// Swaps the rule set; unchanged rules keep their alerts.
    pub fn reload_rules(&self, rules: RuleSet) {
        let _ = self.control.send(Control::Rules(rules));
    }

    /// Records that `kind` (`web_config`, loaded outside the scheduler) was (re)loaded.
    pub fn reload_succeeded(&self, kind: &'static str) {
        let _ = self.control.send(Control::Succeeded { kind });
    }

    /// Records that a reload of `kind` (`config`, `rules`) failed; the old version stays.
    pub fn reload_failed(&self, kind: &'static str, error: String) {
        let _ = self.control.send(Control::Failed { kind, error });
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn initial_status(target: &Target) -> TargetStatus {
    TargetStatus {
        name: target.name.clone(),
        source: target.source.kind(),
        endpoint: target.source.endpoint(),
        labels: target.labels.clone(),
        up: false,
        samples: 0,
        last_duration_seconds: None,
        last_success_unix_seconds: None,
        errors: BTreeMap::new(),
        last_error: None,
        warnings: Vec::new(),
        server: None,
        pools: Arc::default(),
        gone: Vec::new(),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Report {
    generation: u64,
    index: usize,
    at: Instant,
    duration: Duration,
    outcome: Result<TargetSample, SampleError>,
}

async fn sample_loop(
    generation: u64,
    index: usize,
    target: Target,
    interval: Duration,
    deadline: Duration,
    reports: mpsc::Sender<Report>,
    receiver: Option<Arc<Receiver>>,
) {
    let mut source = sources::build(&target, deadline, receiver.as_ref());
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
                    target.source.endpoint()
                ),
            }),
        };
        if outcome.is_err() {
            // A half-read answer or a hung peer: start over on a fresh connection.
            source.reset();
        }
        let report = Report {
            generation,
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
    series: SeriesStore,
    engine: RuleEngine,
    receiver: Option<Arc<Receiver>>,
    exposer: Exposer,
    /// Per target, the labels of its own telemetry.
    target_labels: Vec<Vec<metrics::Label>>,
    hold: bool,
    config: Config,
    targets: Vec<TargetStatus>,
    tasks: Vec<JoinHandle<()>>,
    /// Bumped when targets restart, so reports of stopped tasks are ignored.
    generation: u64,
    reports: mpsc::Sender<Report>,
    agent: AgentStatus,
    publish: watch::Sender<Arc<Published>>,
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Aggregator {
    /// (Re)starts one task per target; statuses of targets that stay are kept.
    fn spawn_targets(&mut self, mut previous: BTreeMap<String, TargetStatus>) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.generation += 1;
        self.targets = self
            .config
            .targets
            .iter()
            .map(|t| {
                let fresh = initial_status(t);
                // A target that stays keeps its telemetry; what the config says is new.
                match previous.remove(&t.name) {
                    Some(old) => TargetStatus {
                        source: fresh.source,
                        endpoint: fresh.endpoint,
                        labels: fresh.labels,
                        ..old
                    },
                    None => fresh,
                }
            })
            .collect();
        self.target_labels = self
            .targets
            .iter()
            .map(|t| telemetry::target_labels(&t.name, t.source.as_str(), &t.labels))
            .collect();
        self.target_labels
            .iter()
            .for_each(|l| telemetry::target_started(l));
        self.tasks = self
            .config
            .targets
            .iter()
            .enumerate()
            .map(|(index, target)| {
                tokio::spawn(sample_loop(
                    self.generation,
                    index,
                    target.clone(),
                    self.config.sample_interval,
                    self.config.sample_timeout,
                    self.reports.clone(),
                    self.receiver.clone(),
                ))
            })
            .collect();
    }

    /// Applies reports and publishes. Targets sampled on the same tick report close together,
    /// and publishing costs far more than a sample, so after a report it waits up to `coalesce`
    /// for the other targets and publishes once for all of them. Publishing (milliseconds per
    /// hundred pools) runs where the task is, in place ([`in_place`]): the tasks queued on
    /// this worker, scrapes among them, move to another thread meanwhile.
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Report>,
        mut controls: mpsc::UnboundedReceiver<Control>,
    ) {
        loop {
            let coalesce = (self.config.sample_interval / 10).min(COALESCE_LIMIT);
            tokio::select! {
                report = inbox.recv() => {
                    let Some(report) = report else { return };
                    let mut reported = vec![false; self.targets.len()];
                    self.apply(report, &mut reported);
                    let deadline = tokio::time::Instant::now() + coalesce;
                    while reported.iter().any(|r| !r) {
                        match tokio::time::timeout_at(deadline, inbox.recv()).await {
                            Ok(Some(report)) => self.apply(report, &mut reported),
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    in_place(|| self.publish_now(Some(unix_now())));
                }
                control = controls.recv() => {
                    let Some(control) = control else { return };
                    self.control(control);
                    self.publish_now(None);
                }
            }
        }
    }

    fn control(&mut self, control: Control) {
        match control {
            Control::Rules(rules) => {
                tracing::info!(
                    rules = rules.rule_count(),
                    files = rules.files.len(),
                    "rules reloaded"
                );
                self.series.set_reads(rules.reads());
                self.engine.replace(rules);
                self.agent.rules_loaded = self.engine.rules().rule_count();
                telemetry::rules_loaded(self.agent.rules_loaded);
                self.reload_succeeded("rules");
            }
            Control::Config(config) => {
                if config.listen != self.config.listen {
                    tracing::warn!(listen = %config.listen, "a new listen address takes a restart");
                }
                if config.otlp_receiver != self.config.otlp_receiver {
                    tracing::warn!("a change to otlp_receiver takes a restart");
                }
                if config.otlp != self.config.otlp {
                    tracing::warn!("a change to the OTLP export takes a restart");
                }
                tracing::info!(targets = config.targets.len(), "config reloaded");
                let previous = self
                    .targets
                    .drain(..)
                    .map(|t| (t.name.clone(), t))
                    .collect();
                self.config = *config;
                self.spawn_targets(previous);
                self.reload_succeeded("config");
            }
            Control::Succeeded { kind } => self.reload_succeeded(kind),
            Control::Failed { kind, error } => {
                let status = self.agent.reloads.entry(kind).or_default();
                status.successful = false;
                status.last_error = Some(error);
                telemetry::reloaded(kind, None);
            }
        }
    }

    fn reload_succeeded(&mut self, kind: &'static str) {
        let status = self.agent.reloads.entry(kind).or_default();
        status.successful = true;
        status.last_error = None;
        status.last_success_unix_seconds = Some(unix_now());
        telemetry::reloaded(kind, status.last_success_unix_seconds);
    }

    fn apply(&mut self, report: Report, reported: &mut [bool]) {
        if report.generation != self.generation {
            return;
        }
        let Some(config) = self.config.targets.get(report.index) else {
            return;
        };
        if let Some(r) = reported.get_mut(report.index) {
            *r = true;
        }
        let status = &mut self.targets[report.index];
        status.samples += 1;
        status.last_duration_seconds = Some(report.duration.as_secs_f64());
        if let Some(labels) = self.target_labels.get(report.index) {
            let error = report.outcome.as_ref().err().map(|e| e.kind);
            telemetry::sample_finished(labels, report.duration, error);
        }
        match report.outcome {
            Ok(mut sample) => {
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
                let pools = std::mem::take(&mut sample.pools);
                self.store
                    .record(&status.name, report.at, pools, config.limits);
                status.up = true;
                status.last_error = None;
                status.last_success_unix_seconds = Some(unix_now());
                status.warnings = sample.warnings;
                let mut pools = self.store.figures(&status.name);
                // A postgres target's pools are its server's own clients, so its headroom caps
                // them; no other source says which server a pool is on.
                let server =
                    (config.source.kind() == SourceKind::Postgres).then_some(&sample.server);
                // The figures of the last sample, in the same order: each pool's, if it had
                // any, for the recommendation to reuse.
                let mut last = status.pools.iter().peekable();
                for pool in &mut pools {
                    let limit = server.and_then(|s| s.postgres_limit_for(&pool.latest));
                    let key = pool.latest.key();
                    while last.next_if(|l| l.latest.key() < key).is_some() {}
                    let earlier = last.next_if(|l| l.latest.key() == key);
                    pool.recommend(self.config.target_p99_wait, limit.as_ref(), earlier);
                }
                status.pools = pools.into();
                status.server = Some(sample.server);
                status.gone = sample.gone;
            }
            Err(error) => {
                if status.up || status.samples == 1 {
                    tracing::warn!(target_name = %status.name, error = %error, "target is down");
                } else {
                    tracing::debug!(target_name = %status.name, error = %error, "target still down");
                }
                status.up = false;
                self.store.forget(&status.name);
                *status.errors.entry(error.kind).or_default() += 1;
                status.last_error = Some(error.to_string());
                status.pools = Arc::default();
                status.server = None;
            }
        }
    }

    /// Feeds the series window (when `scraped_at` is given), evaluates the rules that are due,
    /// makes the exposition model's samples; then publishes.
    fn publish_now(&mut self, scraped_at: Option<f64>) {
        let mut snapshot = Snapshot {
            targets: self.targets.clone(),
            agent: self.agent.clone(),
        };
        // Sized as the last publish's. Its exposition may never have been rendered: then the
        // length it expected is passed on.
        let (last_samples, metrics_hint) = {
            let last = self.publish.borrow();
            let hint = last.metrics.get().map_or(last.metrics_hint, |m| m.len());
            (last.samples.len(), hint)
        };
        let mut samples = Vec::with_capacity(last_samples);
        self.exposer.samples(&snapshot, &mut samples);
        if let Some(at) = scraped_at {
            let t = (at * 1000.0) as Millis;
            self.series.ingest_scrape(t, &samples);
            telemetry::window_kept(
                self.series.series_count(),
                self.series.packed_samples(),
                self.series.sample_bytes(),
            );
            let started = Instant::now();
            let evaluated = if self.hold {
                self.engine
                    .evaluate_due(&self.series, t, self.config.evaluation_interval)
            } else {
                self.engine.evaluate_all(&self.series, t, false);
                true
            };
            if evaluated {
                let took = started.elapsed();
                telemetry::rules_evaluated(took, self.engine.errors.len());
                self.agent.rule_evaluation_seconds = Some(took.as_secs_f64());
                self.agent.rule_errors = self.engine.errors.clone();
                snapshot.agent = self.agent.clone();
            }
        }
        let alerts = self.engine.alerts();
        let mut alert_samples = Vec::new();
        exposition::alert_samples(alerts.iter().map(|(_, a)| *a), &mut alert_samples);
        let alerts = alerts.into_iter().map(|(_, a)| a.clone()).collect();
        let published = Published {
            metrics_hint,
            samples,
            alert_samples,
            snapshot,
            alerts,
            notifications: self.engine.notifications(self.config.evaluation_interval),
            ..Published::default()
        };
        self.publish.send_replace(Arc::new(published));
        crate::memory::release_freed();
    }
}

/// Runs `work` (milliseconds of CPU) on this thread. On a multi-thread runtime this worker
/// first hands what it has queued to another thread: a task woken behind the work (a scrape's
/// connection, typically) is otherwise stuck until it ends, since the task a worker wakes last
/// is kept for itself and no other worker takes it.
fn in_place<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}
