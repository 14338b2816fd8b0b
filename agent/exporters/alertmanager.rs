//! Alerts to on-call: firing and resolved alerts POSTed to every configured Alertmanager through
//! its API v2 (`POST /api/v2/alerts`), with the semantics of Prometheus' own sender.
//!
//! - An alert is sent when it starts firing, again every `resend_delay` while it fires, at once
//!   when it resolves, and again every `resend_delay` while it is kept resolved (15 minutes,
//!   [`RESOLVED_RETENTION`](crate::rules::alerts::RESOLVED_RETENTION)). Time is the evaluation
//!   time of the alert's rule.
//! - `startsAt` is when the alert started firing, the same for its whole life. A firing alert's
//!   `endsAt` is a lease of four times the larger of `resend_delay` and its group's interval;
//!   re-sending renews it, so an agent that stops leaves nothing firing forever. A resolved
//!   alert's `endsAt` is when it resolved.
//! - Each Alertmanager has its own task and bounded queue: a dead or slow one delays no other,
//!   and neither sampling nor `/metrics`, which only publish the state this reads.
//! - A queue holds the latest state of each undelivered alert, oldest first, up to
//!   [`QUEUE_CAPACITY`]; beyond it the oldest are dropped and counted. Failed requests are
//!   retried with backoff; a rejected batch (4xx) is dropped, as it would be rejected again.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use url::Url;

use crate::config::Alerting;
use crate::rules::alerts::Notification;
use crate::series::Millis;
use crate::status::Published;
use crate::telemetry;

/// Alerts per request, as Prometheus' `maxBatchSize`.
pub const MAX_BATCH: usize = 64;
/// Undelivered alerts kept per Alertmanager (Prometheus' `--alertmanager.notification-queue-capacity`
/// default).
pub const QUEUE_CAPACITY: usize = 10_000;
/// A firing alert's lease, in resend delays or evaluation intervals: it survives three missed
/// sends (rules/manager.go's `4 * delta`).
const LEASE_INTERVALS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

type Labels = BTreeMap<String, String>;

/// One alert as Alertmanager's API v2 takes it (`PostableAlert`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: Labels,
    pub annotations: Labels,
    /// RFC 3339, UTC, milliseconds.
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// What the sender runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The URLs alerts are POSTed to.
    pub alertmanagers: Vec<Url>,
    pub timeout: Duration,
    pub resend_delay: Duration,
    pub generator_url: String,
    pub queue_capacity: usize,
}

impl Settings {
    /// From the config; `served_on` is the address the agent serves its API on.
    pub fn new(alerting: &Alerting, served_on: std::net::SocketAddr) -> Settings {
        Settings {
            alertmanagers: alerting.alertmanagers.clone(),
            timeout: alerting.timeout,
            resend_delay: alerting.resend_delay,
            generator_url: alerting.generator_url(served_on),
            queue_capacity: QUEUE_CAPACITY,
        }
    }
}

fn rfc3339(t: Millis) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(t.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn millis(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// Decides which alerts are due, as Prometheus' `needsSending`: never sent, resolved since last
/// sent, or last sent more than `resend_delay` before its rule's latest evaluation. Remembers
/// when each alert was last sent, for as long as the alert exists.
#[derive(Debug, Default)]
pub struct Resender {
    /// By labels and firing time: an alert that fires again after resolving is a new alert.
    last_sent: BTreeMap<(Labels, Millis), Millis>,
}

impl Resender {
    pub fn due(
        &mut self,
        notifications: &[Notification],
        settings: &Settings,
    ) -> Vec<PostableAlert> {
        let resend = millis(settings.resend_delay);
        let mut due = Vec::new();
        let mut current = BTreeMap::new();
        for n in notifications {
            let alert = &n.alert;
            let fired_at = alert.fired_at.unwrap_or(alert.active_at);
            let key = (alert.labels.clone(), fired_at);
            let last = self.last_sent.get(&key).copied();
            let needed = match last {
                None => true,
                Some(sent) => {
                    alert.resolved_at.is_some_and(|at| at > sent) || sent + resend < n.evaluated_at
                }
            };
            let sent = if needed {
                let lease = settings.resend_delay.max(n.interval) * LEASE_INTERVALS;
                let ends_at = alert.resolved_at.unwrap_or(n.evaluated_at + millis(lease));
                due.push(PostableAlert {
                    labels: alert.labels.clone(),
                    annotations: alert.annotations.clone(),
                    starts_at: rfc3339(fired_at),
                    ends_at: rfc3339(ends_at),
                    generator_url: settings.generator_url.clone(),
                });
                n.evaluated_at
            } else {
                last.unwrap_or(n.evaluated_at)
            };
            current.insert(key, sent);
        }
        // Alerts past their retention are gone: so is what we knew of them.
        self.last_sent = current;
        due
    }
}

/// Undelivered alerts of one Alertmanager, oldest first. A newer state of a queued alert takes
/// the older one's place, so the queue holds at most one entry per alert.
#[derive(Debug)]
struct Queue {
    /// By arrival (a counter), with the version last written there.
    entries: BTreeMap<u64, (u64, Arc<PostableAlert>)>,
    by_labels: BTreeMap<Labels, u64>,
    counter: u64,
    capacity: usize,
}

/// Alerts taken from a queue for one request: (slot, version, alert).
type Batch = Vec<(u64, u64, Arc<PostableAlert>)>;

impl Queue {
    fn new(capacity: usize) -> Queue {
        Queue {
            entries: BTreeMap::new(),
            by_labels: BTreeMap::new(),
            counter: 0,
            capacity: capacity.max(1),
        }
    }

    /// Queues `alert`; returns how many of the oldest were dropped to make room.
    fn push(&mut self, alert: Arc<PostableAlert>) -> usize {
        self.counter += 1;
        let version = self.counter;
        if let Some(slot) = self.by_labels.get(&alert.labels) {
            self.entries.insert(*slot, (version, alert));
            return 0;
        }
        self.by_labels.insert(alert.labels.clone(), version);
        self.entries.insert(version, (version, alert));
        let mut dropped = 0;
        while self.entries.len() > self.capacity {
            if let Some((_, (_, oldest))) = self.entries.pop_first() {
                self.by_labels.remove(&oldest.labels);
                dropped += 1;
            }
        }
        dropped
    }

    fn batch(&self, max: usize) -> Batch {
        self.entries
            .iter()
            .take(max)
            .map(|(slot, (version, alert))| (*slot, *version, alert.clone()))
            .collect()
    }

    /// Removes what `batch` took, unless a newer state replaced it meanwhile.
    fn remove(&mut self, batch: &Batch) {
        for (slot, version, alert) in batch {
            if self.entries.get(slot).is_some_and(|(v, _)| v == version) {
                self.entries.remove(slot);
                self.by_labels.remove(&alert.labels);
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Why a request to an Alertmanager failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Unreachable, timed out, or a 5xx/429: worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// Any other non-2xx: the same alerts would be rejected again.
    #[error("{0}")]
    Rejected(String),
}

/// The queue, also after a panic elsewhere: it stays consistent, every change is one call.
fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One Alertmanager: its queue and the task that empties it.
struct Destination {
    label: String,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Destination {
    fn start(url: Url, client: reqwest::Client, settings: &Settings) -> Destination {
        let label = url.to_string();
        let queue = Arc::new(Mutex::new(Queue::new(settings.queue_capacity)));
        let wake = Arc::new(Notify::new());
        let delivery = Delivery {
            url,
            label: label.clone(),
            client,
            queue: queue.clone(),
            wake: wake.clone(),
            max_backoff: MAX_BACKOFF.min(settings.resend_delay),
        };
        Destination {
            label,
            queue,
            wake,
            task: tokio::spawn(delivery.run()),
        }
    }

    fn push(&self, alerts: &[Arc<PostableAlert>]) {
        let (dropped, length) = {
            let mut queue = lock(&self.queue);
            let dropped: usize = alerts.iter().map(|a| queue.push(a.clone())).sum();
            (dropped, queue.len())
        };
        if dropped > 0 {
            tracing::warn!(alertmanager = %self.label, dropped, "alert queue full, dropped the oldest alerts");
            telemetry::notifications_dropped(&self.label, dropped);
        }
        telemetry::notification_queue(&self.label, length);
        self.wake.notify_one();
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        self.task.abort();
        telemetry::notification_queue(&self.label, 0);
    }
}

/// The task delivering one Alertmanager's queue.
struct Delivery {
    url: Url,
    label: String,
    client: reqwest::Client,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    max_backoff: Duration,
}

impl Delivery {
    async fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        // Whether the last request failed: a failure is logged when it starts, not per retry.
        let mut failing = false;
        loop {
            let batch = lock(&self.queue).batch(MAX_BATCH);
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let outcome = self.post(&batch).await;
            let length = {
                let mut queue = lock(&self.queue);
                if !matches!(outcome, Err(DeliveryError::Unavailable(_))) {
                    queue.remove(&batch);
                }
                queue.len()
            };
            telemetry::notification_queue(&self.label, length);
            match outcome {
                Ok(()) => {
                    telemetry::notifications_sent(&self.label, batch.len());
                    if failing {
                        tracing::info!(alertmanager = %self.label, "delivering alerts again");
                    }
                    failing = false;
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                Err(error) => {
                    telemetry::notification_failed(&self.label);
                    let rejected = matches!(error, DeliveryError::Rejected(_));
                    if rejected {
                        telemetry::notifications_dropped(&self.label, batch.len());
                    }
                    let what = if rejected {
                        "Alertmanager rejected alerts; they are dropped"
                    } else {
                        "cannot deliver alerts; retrying with backoff"
                    };
                    if failing {
                        tracing::debug!(alertmanager = %self.label, alerts = batch.len(), %error, "{what}");
                    } else {
                        tracing::warn!(alertmanager = %self.label, alerts = batch.len(), %error, "{what}");
                    }
                    failing = true;
                    if rejected {
                        continue;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    async fn post(&self, batch: &Batch) -> Result<(), DeliveryError> {
        let alerts: Vec<&PostableAlert> = batch.iter().map(|(_, _, a)| a.as_ref()).collect();
        let body = serde_json::to_vec(&alerts)
            .map_err(|e| DeliveryError::Rejected(format!("cannot encode the alerts: {e}")))?;
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            // The URL is in the log line already.
            .map_err(|e| DeliveryError::Unavailable(chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Alertmanager says why in the body (e.g. a label it refuses); keep a line of it.
        let said = response.text().await.unwrap_or_default();
        let said: String = said.trim().chars().take(200).collect();
        let message = format!("{status}: {said}");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(DeliveryError::Unavailable(message))
        } else {
            Err(DeliveryError::Rejected(message))
        }
    }
}

/// An error with its causes: reqwest's own message alone ("error sending request") hides why.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The running sender; dropping it stops every delivery.
pub struct Notifier {
    settings: watch::Sender<Settings>,
    task: JoinHandle<()>,
}

impl Notifier {
    /// Starts sending what `published` says is firing or resolved (inside a tokio runtime).
    pub fn start(settings: Settings, published: watch::Receiver<Arc<Published>>) -> Notifier {
        let (tx, rx) = watch::channel(settings);
        Notifier {
            settings: tx,
            task: tokio::spawn(dispatch(rx, published)),
        }
    }

    /// New settings (a config reload): the deliveries restart and every current alert is sent
    /// again to the Alertmanagers now listed; the alerts' state is the rule engine's, untouched.
    pub fn reconfigure(&self, settings: Settings) {
        self.settings.send_if_modified(|current| {
            let changed = *current != settings;
            *current = settings;
            changed
        });
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_destinations(settings: &Settings) -> Vec<Destination> {
    telemetry::alertmanagers(settings.alertmanagers.len(), settings.queue_capacity);
    if settings.alertmanagers.is_empty() {
        return Vec::new();
    }
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("poolwatch/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %chain(&e), "cannot build the HTTP client for Alertmanager; alerts are not sent");
            return Vec::new();
        }
    };
    settings
        .alertmanagers
        .iter()
        .map(|url| Destination::start(url.clone(), client.clone(), settings))
        .collect()
}

/// Follows the published state and queues what is due to every Alertmanager.
async fn dispatch(
    mut settings: watch::Receiver<Settings>,
    mut published: watch::Receiver<Arc<Published>>,
) {
    let mut current = settings.borrow_and_update().clone();
    let mut destinations = start_destinations(&current);
    let mut resender = Resender::default();
    loop {
        // Marks the state seen even when there is nowhere to send it, so `changed` waits.
        let state = published.borrow_and_update().clone();
        if !destinations.is_empty() {
            let due: Vec<Arc<PostableAlert>> = resender
                .due(&state.notifications, &current)
                .into_iter()
                .map(Arc::new)
                .collect();
            if !due.is_empty() {
                for destination in &destinations {
                    destination.push(&due);
                }
            }
        }
        // The renderer frees a snapshot when the last reader lets go: not while this waits.
        drop(state);
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                current = settings.borrow_and_update().clone();
                tracing::info!(alertmanagers = current.alertmanagers.len(), "alerting settings changed");
                destinations = start_destinations(&current);
                resender = Resender::default();
            }
        }
    }
}

#[cfg(test)]
mod tests;
