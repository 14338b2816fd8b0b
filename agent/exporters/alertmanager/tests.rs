//! The sender's decisions, driven by explicit evaluation times: what is due when, its lease, and
//! the bounded queue. Delivery to a real Alertmanager is tested in tests/alertmanager.rs.

use super::*;
use crate::rules::alerts::{Alert, AlertState};

const SEC: Millis = 1_000;
/// 2024-01-01T00:00:00Z.
const T0: Millis = 1_704_067_200_000;

fn settings() -> Settings {
    Settings {
        alertmanagers: Vec::new(),
        timeout: Duration::from_secs(10),
        resend_delay: Duration::from_secs(60),
        generator_url: "http://127.0.0.1:9898/api/v1/alerts".into(),
        queue_capacity: 3,
    }
}

fn labels(name: &str) -> Labels {
    [
        ("alertname", name),
        ("severity", "warning"),
        ("target", "bouncer"),
        ("db_client_connection_pool_name", "mdm_demo"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Alert `name`, firing since `fired_at`, resolved at `resolved_at`, its rule evaluated at `at`
/// in a group evaluated every 10 s.
fn notification(
    name: &str,
    fired_at: Millis,
    resolved_at: Option<Millis>,
    at: Millis,
) -> Notification {
    let mut alert = Alert::default();
    alert.labels = labels(name);
    alert.annotations = [(
        "recommendation".to_string(),
        "Increase pool_size to 15".to_string(),
    )]
    .into();
    alert.state = AlertState::Firing;
    alert.active_at = fired_at - 60 * SEC;
    alert.fired_at = Some(fired_at);
    alert.resolved_at = resolved_at;
    alert.value = 15.0;
    Notification {
        alert,
        evaluated_at: at,
        interval: Duration::from_secs(10),
    }
}

fn ends(due: &[PostableAlert]) -> Vec<&str> {
    due.iter().map(|a| a.ends_at.as_str()).collect()
}

#[test]
fn the_payload_is_alertmanagers_postable_alert() {
    let mut resender = Resender::default();
    let due = resender.due(
        &[notification("PoolUtilizationHigh", T0, None, T0)],
        &settings(),
    );
    let json = serde_json::to_value(&due).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "labels": {
                "alertname": "PoolUtilizationHigh",
                "db_client_connection_pool_name": "mdm_demo",
                "severity": "warning",
                "target": "bouncer"
            },
            "annotations": {"recommendation": "Increase pool_size to 15"},
            "startsAt": "2024-01-01T00:00:00.000Z",
            "endsAt": "2024-01-01T00:04:00.000Z",
            "generatorURL": "http://127.0.0.1:9898/api/v1/alerts"
        }])
    );
}

#[test]
fn a_firing_alert_is_resent_after_the_resend_delay_with_a_renewed_lease() {
    let mut resender = Resender::default();
    let s = settings();
    let at = |t: Millis| vec![notification("A", T0, None, t)];
    assert_eq!(
        ends(&resender.due(&at(T0), &s)),
        ["2024-01-01T00:04:00.000Z"]
    );
    // Not again until more than resend_delay (1m) after the last send, as `needsSending`.
    assert!(resender.due(&at(T0 + 10 * SEC), &s).is_empty());
    assert!(resender.due(&at(T0 + 60 * SEC), &s).is_empty());
    let again = resender.due(&at(T0 + 70 * SEC), &s);
    assert_eq!(ends(&again), ["2024-01-01T00:05:10.000Z"]);
    assert_eq!(
        again[0].starts_at, "2024-01-01T00:00:00.000Z",
        "startsAt never moves"
    );
    // The same evaluation seen twice (a publish without evaluation) sends nothing.
    assert!(resender.due(&at(T0 + 70 * SEC), &s).is_empty());
}

#[test]
fn the_lease_covers_four_group_intervals_when_they_are_longer() {
    let mut resender = Resender::default();
    let mut n = notification("A", T0, None, T0);
    n.interval = Duration::from_secs(5 * 60);
    assert_eq!(
        ends(&resender.due(&[n], &settings())),
        ["2024-01-01T00:20:00.000Z"]
    );
}

#[test]
fn a_resolution_is_sent_at_once_then_every_resend_delay_until_forgotten() {
    let mut resender = Resender::default();
    let s = settings();
    resender.due(&[notification("A", T0, None, T0)], &s);
    let resolved = |t: Millis| vec![notification("A", T0, Some(T0 + 10 * SEC), t)];
    // Resolved 10 s after the last send: due now, endsAt = the resolution.
    let due = resender.due(&resolved(T0 + 10 * SEC), &s);
    assert_eq!(ends(&due), ["2024-01-01T00:00:10.000Z"]);
    assert!(resender.due(&resolved(T0 + 20 * SEC), &s).is_empty());
    assert_eq!(
        ends(&resender.due(&resolved(T0 + 80 * SEC), &s)),
        ["2024-01-01T00:00:10.000Z"]
    );
    // Past its retention the engine drops it; the resender forgets it too.
    assert!(resender.due(&[], &s).is_empty());
    assert!(resender.last_sent.is_empty());
}

#[test]
fn an_alert_firing_again_is_sent_at_once() {
    let mut resender = Resender::default();
    let s = settings();
    resender.due(
        &[notification("A", T0, Some(T0 + 10 * SEC), T0 + 10 * SEC)],
        &s,
    );
    // Fires again 20 s later: a new alert (new startsAt), not held back by the resend delay.
    let due = resender.due(&[notification("A", T0 + 30 * SEC, None, T0 + 30 * SEC)], &s);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].starts_at, "2024-01-01T00:00:30.000Z");
}

fn postable(name: &str, ends_at: &str) -> Arc<PostableAlert> {
    Arc::new(PostableAlert {
        labels: labels(name),
        annotations: Labels::new(),
        starts_at: "2024-01-01T00:00:00.000Z".into(),
        ends_at: ends_at.into(),
        generator_url: String::new(),
    })
}

fn queued(queue: &Queue) -> Vec<(String, String)> {
    queue
        .batch(usize::MAX)
        .into_iter()
        .map(|(_, _, a)| (a.labels["alertname"].clone(), a.ends_at.clone()))
        .collect()
}

#[test]
fn a_full_queue_drops_the_oldest_and_holds_one_state_per_alert() {
    let mut queue = Queue::new(3);
    assert_eq!(queue.push(postable("A", "1")), 0);
    assert_eq!(queue.push(postable("B", "1")), 0);
    // A newer state of A takes A's place: no growth.
    assert_eq!(queue.push(postable("A", "2")), 0);
    assert_eq!(queue.push(postable("C", "1")), 0);
    assert_eq!(queue.push(postable("D", "1")), 1);
    assert_eq!(
        queued(&queue),
        [("B", "1"), ("C", "1"), ("D", "1")].map(|(a, e)| (a.to_string(), e.to_string()))
    );
    // A comes back as a new entry at the end.
    assert_eq!(queue.push(postable("A", "3")), 1);
    assert_eq!(queue.len(), 3);
}

#[test]
fn a_delivered_batch_leaves_what_changed_meanwhile() {
    let mut queue = Queue::new(10);
    queue.push(postable("A", "1"));
    queue.push(postable("B", "1"));
    let batch = queue.batch(MAX_BATCH);
    // While the request is out, A resolves.
    queue.push(postable("A", "2"));
    queue.remove(&batch);
    assert_eq!(queued(&queue), [("A".to_string(), "2".to_string())]);
    let batch = queue.batch(1);
    queue.remove(&batch);
    assert_eq!(queue.len(), 0);
}
