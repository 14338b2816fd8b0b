//! Runs the agent's `benchmark` command and reads the reports it writes.

use std::path::Path;
use std::process::Command;

use poolwatch::bench::report::Report;

use super::binary;

/// Runs `benchmark` with these arguments, failing the test with its output if it fails.
pub fn benchmark(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<Report> {
    run_benchmark(Command::new(binary()), dir, args, env)
}

/// As [`benchmark`], at real-time priority where the test runs as root (as CI does): waits of
/// a fraction of a millisecond are then the pool's, not the time other processes kept the
/// woken caller off the CPU. The load generator sleeps most of the time, and the kernel keeps
/// 5% of each second for everything else whatever it does.
pub fn benchmark_realtime(dir: &Path, args: &[&str]) -> Vec<Report> {
    let root = nix::unistd::Uid::effective().is_root();
    let command = if root && Command::new("chrt").arg("--version").output().is_ok() {
        let mut command = Command::new("chrt");
        command.args(["--fifo", "10", binary()]);
        command
    } else {
        Command::new(binary())
    };
    run_benchmark(command, dir, args, &[])
}

fn run_benchmark(
    mut command: Command,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<Report> {
    let out = command
        .arg("benchmark")
        .args(args)
        .envs(env.iter().copied())
        .arg("--report")
        .arg(dir.join("pool_test_{pool_size}.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "benchmark failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reports: Vec<Report> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    reports.sort_by_key(|r| r.settings.pool.pool_size);
    reports
}
