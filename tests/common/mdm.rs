//! MDM's side of the tests: the Python that makes databases the way MDM does (SQLAlchemy,
//! sqlite3, DuckDB; from `scripts/python-env.sh`), and the processes that use them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with MDM's libraries (the project's environment, scripts/python-env.sh).
pub fn python() -> PathBuf {
    PathBuf::from(super::python())
}

fn fixture_command(args: &[&str]) -> Command {
    let mut command = Command::new(python());
    command.arg(root().join("tests/mdm/fixture.py")).args(args);
    command
}

/// Runs a fixture command to its end (making or removing a dataset).
pub fn run(args: &[&str]) {
    let out = fixture_command(args).output().unwrap();
    assert!(
        out.status.success(),
        "fixture.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Registers a dataset in `home` as MDM does.
pub fn dataset(home: &Path, name: &str, backend: &str, rows: u64, journal: &str) {
    run(&[
        "dataset",
        home.to_str().unwrap(),
        name,
        backend,
        &rows.to_string(),
        "--journal",
        journal,
    ]);
}

/// A fixture process that holds or writes a database until it is done or released.
pub struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub pid: u32,
}

impl Process {
    /// Starts a long-running fixture command and waits until it holds what it holds.
    pub fn start(args: &[&str]) -> Process {
        let mut child = fixture_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("fixture.py {args:?} said {line:?} instead of ready"));
        Process {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Lets a holder go (closes its stdin), waits for the process to finish and returns its
    /// JSON report.
    pub fn report(mut self) -> serde_json::Value {
        drop(self.stdin.take());
        let mut rest = String::new();
        for line in (&mut self.stdout).lines() {
            rest = line.unwrap();
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "fixture process failed: {status}");
        serde_json::from_str(&rest).unwrap_or_else(|_| panic!("no report: {rest:?}"))
    }

    /// The process name the kernel shows (`comm`).
    pub fn name(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
