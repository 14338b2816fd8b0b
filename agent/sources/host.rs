//! CPU and memory of the host and of the processes holding watched files, from `/proc` through
//! procfs, so the spec's `ResourceLimiter` thresholds can be rules. CPU is a share of the time
//! since the previous sample, so the first sample has none (absent, not 0).

use std::collections::BTreeMap;
use std::time::Instant;

use procfs::{Current, CurrentSI};

use crate::model::HostSample;

/// The previous readings that CPU shares are computed against.
#[derive(Debug, Default)]
pub struct CpuTracker {
    host: Option<(u64, u64)>,
    /// Per pid: its start time (a reused pid is another process), CPU ticks, when read.
    processes: BTreeMap<i32, (u64, u64, Instant)>,
}

/// A process's own figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    pub cpu_utilization: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
}

impl CpuTracker {
    /// The host now; CPU over the time since the previous call.
    pub fn host(&mut self) -> HostSample {
        let cpu = procfs::KernelStats::current().ok().map(|stats| {
            let t = stats.total;
            let idle = t.idle + t.iowait.unwrap_or(0);
            let busy = t.user
                + t.nice
                + t.system
                + t.irq.unwrap_or(0)
                + t.softirq.unwrap_or(0)
                + t.steal.unwrap_or(0);
            (busy, busy + idle)
        });
        let cpu_utilization = match (self.host, cpu) {
            (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
                Some(busy1.saturating_sub(busy0) as f64 / (all1 - all0) as f64)
            }
            _ => None,
        };
        self.host = cpu.or(self.host);
        let memory = procfs::Meminfo::current().ok();
        HostSample {
            cpu_utilization,
            memory_total_bytes: memory.as_ref().map(|m| m.mem_total),
            memory_available_bytes: memory.and_then(|m| m.mem_available),
        }
    }

    /// A process now; CPU as a share of one CPU since the previous call for the same process.
    pub fn process(&mut self, pid: i32, now: Instant) -> ProcessUsage {
        let Ok(stat) = procfs::process::Process::new(pid).and_then(|p| p.stat()) else {
            return ProcessUsage::default();
        };
        let ticks = stat.utime + stat.stime;
        let per_second = procfs::ticks_per_second() as f64;
        let cpu_utilization = match self.processes.get(&pid) {
            Some(&(start, before, then)) if start == stat.starttime => {
                let elapsed = now.saturating_duration_since(then).as_secs_f64();
                (elapsed > 0.0).then(|| ticks.saturating_sub(before) as f64 / per_second / elapsed)
            }
            _ => None,
        };
        self.processes.insert(pid, (stat.starttime, ticks, now));
        ProcessUsage {
            cpu_utilization,
            resident_memory_bytes: Some(stat.rss * procfs::page_size()),
        }
    }

    /// Forgets processes not seen in the last sample.
    pub fn retain(&mut self, seen: &[i32]) {
        self.processes.retain(|pid, _| seen.contains(pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_needs_two_readings_and_memory_is_read_at_once() {
        let mut tracker = CpuTracker::default();
        let first = tracker.host();
        assert_eq!(first.cpu_utilization, None);
        assert!(first.memory_total_bytes.unwrap() > first.memory_available_bytes.unwrap());
        // Keep one CPU busy long enough for the kernel's tick counters to move.
        let start = Instant::now();
        let mut spin = 0u64;
        while start.elapsed().as_millis() < 50 {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let second = tracker.host();
        let share = second.cpu_utilization.unwrap();
        assert!((0.0..=1.0).contains(&share), "{share}");

        let me = std::process::id() as i32;
        assert_eq!(
            tracker.process(me, Instant::now()).cpu_utilization,
            None,
            "one reading is no rate"
        );
        let usage = tracker.process(me, Instant::now() + std::time::Duration::from_secs(1));
        assert!(usage.cpu_utilization.is_some());
        assert!(usage.resident_memory_bytes.unwrap() > 1024 * 1024);
    }
}
