//! The OTLP receiver the tests and the footprint bench run: tests/otlp_receiver/receiver.py,
//! OpenTelemetry's own Python protobuf classes and gRPC, so what the agent sends is decoded by
//! code that is not the agent's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The receiver's Python: the project's environment (scripts/python-env.sh), which has
/// opentelemetry-proto and grpcio through the SQLAlchemy integration's test extras.
pub fn python() -> PathBuf {
    PathBuf::from(super::python())
}

/// The OTLP transport a receiver listens with.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Http,
    Grpc,
}

/// The test's OTLP receiver on one port; killed when dropped.
pub struct Receiver {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub fn start(transport: Transport, port: u16) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("requests.jsonl");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/otlp_receiver/receiver.py"
        );
        let flag = match transport {
            Transport::Http => "--http-port",
            Transport::Grpc => "--grpc-port",
        };
        let mut child = Command::new(python())
            .arg(script)
            .args(["--out", out.to_str().unwrap(), flag, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready", "the receiver did not start");
        Receiver {
            child,
            out,
            _dir: dir,
        }
    }

    /// Every request received so far, decoded: `transport`, `headers` and the `request` in
    /// protobuf's JSON mapping.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
