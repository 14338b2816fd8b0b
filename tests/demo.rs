//! `poolwatch demo` as a newcomer runs it, the built binary on a port of its own: within 30 s the
//! utilization rule fires on its undersized pool and the live summary recommends the size the
//! API gives; Ctrl-C stops it with 130 and leaves no file behind.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{binary, free_port, wait_for};

/// The budget the issue gives a newcomer: rule fired and recommendation shown within 30 s.
const WITHIN: Duration = Duration::from_secs(30);

/// The demo's pools, by target: SQLite first.
const POOLS: [(&str, &str); 2] = [
    ("demo-sqlite", "mdm_demo_sqlite"),
    ("demo-duckdb", "mdm_demo_duckdb"),
];

fn get_json(base: &str, path: &str) -> Option<Value> {
    let mut response = ureq::get(&format!("{base}{path}")).call().ok()?;
    serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
}

/// The last whole summary block in the demo's output (blocks start with their header).
fn last_summary(output: &str) -> Option<&str> {
    let start = output.rfind("poolwatch demo, ")?;
    let block = &output[start..];
    block.contains("recommendations:").then_some(block)
}

#[test]
fn demo_fires_recommends_and_cleans_up_on_ctrl_c() {
    // The demo is load (16 users on two files) under a deadline: it runs beside no other load
    // test, such as the Erlang C test's generator at real-time priority.
    let _load = crate::common::exclusive_load();
    let tmp = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut child = Command::new(binary())
        .args(["demo", "--listen", &listen])
        .env("TMPDIR", tmp.path())
        .env_remove("POOLWATCH_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let output = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };

    let alert = wait_for(
        WITHIN,
        "PoolUtilizationHigh firing in /api/v1/alerts",
        || {
            get_json(&base, "/api/v1/alerts")?
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "PoolUtilizationHigh"
                        && a["labels"]["target"] == "demo-sqlite"
                        && a["state"] == "firing"
                })
                .cloned()
        },
    );
    assert_eq!(
        alert["labels"]["db_client_connection_pool_name"],
        "mdm_demo_sqlite"
    );
    // The demo's files exist while it runs.
    let dir = tmp.path().join(format!("poolwatch-demo-{}", child.id()));
    assert!(dir.join("mdm_demo.sqlite").is_file(), "{dir:?}");

    // Both pools: the summary recommends what the API says, by the model the API names.
    let left = WITHIN.saturating_sub(started.elapsed());
    let (recommended, block) = wait_for(left, "the summary's recommendations", || {
        let pools = get_json(&base, "/api/v1/pools")?;
        let output = output.lock().unwrap();
        let block = last_summary(&output)?;
        let mut recommended = Vec::new();
        for (target, pool_name) in POOLS {
            let pool = pools.as_array()?.iter().find(|p| p["target"] == target)?;
            assert_eq!(pool["limits"]["pool_size"], 2, "{pool}");
            let size = pool["recommended_pool_size"].as_u64()?;
            let model = pool["recommendation"]["model"].as_str()?;
            assert_eq!(pool["recommendation"]["pool_size"], size, "{pool}");
            let line = block
                .lines()
                .find(|l| l.starts_with(&format!("{target}/{pool_name} ")))?;
            // The last two columns: the recommended size and its model.
            let mut last = line.split_whitespace().rev();
            let (shown_model, shown_size) = (last.next()?, last.next()?);
            // A connection between a check-in and the next checkout is neither used nor idle:
            // a summary taken then shows the saturated pool below 100%; the next one does not.
            let saturated = line.split_whitespace().nth(4) == Some("100%");
            let agrees = saturated
                && shown_size == size.to_string()
                && shown_model == model
                && block.contains(&format!(
                    "{target}/{pool_name}: Increase pool_size to {size}"
                ));
            if !agrees {
                return None;
            }
            recommended.push((target, size, model.to_string(), line.to_string()));
        }
        Some((recommended, block.to_string()))
    });
    for (target, size, model, _) in &recommended {
        // An undersized pool: a bigger one is recommended. Its 8 users queue for 2
        // connections, so the checkouts seen are capped by the pool and the 80% rule on used +
        // pending outweighs Erlang C on them.
        assert!(*size > 2, "{target}: {block}");
        assert_eq!(model, "utilization", "{target}: {block}");
        assert!(
            block.contains(&format!("FIRING  PoolUtilizationHigh on {target}/")),
            "{block}"
        );
    }
    let pool_line = &recommended[0].3;
    let columns: Vec<&str> = pool_line.split_whitespace().collect();
    assert_eq!(columns[1], "2", "used: {pool_line}");
    assert_eq!(columns[2], "0", "idle: {pool_line}");
    let intro = output.lock().unwrap().clone();
    assert!(
        intro.contains(&format!("receiver: OTLP at {base}/v1/metrics")),
        "{intro}"
    );
    assert!(intro.contains("capped at 5s for the demo"), "{intro}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_for(Duration::from_secs(10), "the demo to exit", || {
        child.try_wait().unwrap()
    });
    reader.join().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let output = output.lock().unwrap();
    let stopped = output
        .lines()
        .find_map(|l| l.strip_prefix("mdm_demo_sqlite: "))
        .unwrap_or_else(|| panic!("no end line for the SQLite pool: {output}"));
    let completed: u64 = stopped.split(' ').next().unwrap().parse().unwrap();
    assert!(completed > 0, "{stopped}");
    assert!(
        stopped.ends_with("requests completed, 0 failed"),
        "{stopped}"
    );
}
