//! The advisor's Erlang C prediction against real benchmark measurements.

use poolwatch::bench::analyze;
use poolwatch::bench::report::Report;

use crate::common::benchmark::benchmark_realtime;

/// Open loop on SQLite with a controlled hold time: Poisson arrivals, each holding its
/// connection ~20 ms (exponential), on 4, 6 and 8 connections at 120, 180 and 240 arrivals a
/// second, so that each pool runs at ~0.6 utilization, without pre-ping so that the wait is the
/// queue's alone. Each run is predicted from its own arrival rate and mean service time, as the
/// agent predicts a pool from what it observes.
///
/// The service time is the hold plus the hand-off: a returned connection reaches a waiting
/// caller only once that caller's thread runs again, tens of microseconds later on a busy
/// machine, during which the connection serves nobody. The pool measures each hand-off (check-in
/// to the waiter's checkout), and the model gets that time as part of the service; without it the
/// model under-predicts by up to a quarter on a loaded two-core machine.
///
/// What the model leaves out is every checkout's own bookkeeping, waiting or not: 20–40 µs
/// here. Where most callers do not queue (Erlang C's wait probability is under one half, which
/// the test checks), the median wait is that bookkeeping alone, so the queue's wait is the mean
/// less the median. Uncorrected, in an earlier version of this test (5, 6 and 7 connections at 175
/// arrivals a second), it made the smallest mean wait (~0.5 ms at 7) read 8–25 % high.
///
/// At one utilization for all three sizes, none runs near saturation, where a queue's busy
/// periods are long and a minute of arrivals gives a loose mean: at 0.7 utilization six runs
/// read 0.78–1.13 of the prediction; at 0.6 a queue forgets its past within a fraction of a
/// second, and the 7,000–14,000 arrivals a size give a tight estimate.
#[test]
fn erlang_c_predicts_the_measured_mean_wait_within_20_percent() {
    let _load = crate::common::exclusive_load();
    // Erlang C is a model of Poisson arrivals: the comparison means something only if the
    // generator delivered them. When the machine kept its threads off the CPU, arrivals reach
    // the pool in bursts (gap SCV well above 1) and the pool rightly waits more than the model
    // predicts: such a measurement is taken again, up to three times in all.
    let mut attempts = Vec::new();
    let (reports, table) = loop {
        let reports: Vec<Report> = [("4", "120"), ("6", "180"), ("8", "240")]
            .into_iter()
            .flat_map(|(size, rate)| {
                let dir = tempfile::tempdir().unwrap();
                benchmark_realtime(
                    dir.path(),
                    &[
                        "--backend",
                        "sqlite",
                        "--operation",
                        "read",
                        "--rows",
                        "1000",
                        "--pool-size",
                        size,
                        "--pre-ping",
                        "false",
                        "--arrival-rate",
                        rate,
                        "--hold-time-ms",
                        "20",
                        "--concurrent-users",
                        "32",
                        "--duration",
                        "60",
                    ],
                )
            })
            .collect();
        assert_eq!(reports.len(), 3);
        let table = erlang_c_table(&reports);
        eprintln!("{table}");
        let poisson = reports
            .iter()
            .all(|r| (0.85..=1.15).contains(&r.arrival_scv.unwrap()));
        attempts.push(table.clone());
        if poisson {
            break (reports, table);
        }
        assert!(
            attempts.len() < 3,
            "the load generator did not deliver Poisson arrivals (gap SCV 1 expected) in three \
             attempts: the machine is too busy for this measurement\n{}",
            attempts.join("\n")
        );
    };
    for report in &reports {
        assert_eq!(report.errors, 0, "{:?}", report.error_messages);
        assert!(
            prediction(report).wait_probability < 0.5,
            "most callers queue, so the median wait is not the bookkeeping alone:\n{table}"
        );
        let ratio = queue_wait(report) / predicted_mean_wait(report);
        assert!(
            (0.8..=1.2).contains(&ratio),
            "measured / predicted mean wait out of 20%:\n{table}"
        );
    }
}

/// The measured wait the queue accounts for: the mean less the median, every checkout's own
/// bookkeeping where most callers do not queue.
fn queue_wait(report: &Report) -> f64 {
    report.wait_seconds.mean - report.wait_seconds.p50
}

fn prediction(report: &Report) -> poolwatch::advisor::erlang::Prediction {
    let workload = analyze::run_workload(report).unwrap();
    let c = u64::from(report.settings.pool.pool_size);
    poolwatch::advisor::erlang::predict(workload, c)
}

/// Erlang C's mean wait for a run, from its own arrival rate and service time.
fn predicted_mean_wait(report: &Report) -> f64 {
    prediction(report).mean_wait_seconds.unwrap()
}

/// Predicted against measured mean wait per run, with what the prediction rests on.
fn erlang_c_table(reports: &[Report]) -> String {
    let mut table = String::from(
        "pool_size  arrivals/s  service ms  predicted mean wait ms  measured less median  ratio\n",
    );
    for report in reports {
        let workload = analyze::run_workload(report).unwrap();
        let predicted = predicted_mean_wait(report);
        let measured = queue_wait(report);
        let handoffs = report.handoffs.unwrap();
        table.push_str(&format!(
            "{:>9}  {:>10.0}  {:>10.4}  {:>22.4}  {:>20.4}  {:>5.2}   (hold {:.4} ms + {} hand-offs \
             of {:.1} µs mean; median wait {:.1} µs; arrival SCV {:.2}, hold SCV {:.2}, generator \
             delay mean {:.3} ms)\n",
            report.settings.pool.pool_size,
            workload.arrival_rate,
            workload.mean_hold_seconds * 1e3,
            predicted * 1e3,
            measured * 1e3,
            measured / predicted,
            report.hold_seconds.mean * 1e3,
            handoffs.count,
            handoffs.total_seconds / handoffs.count.max(1) as f64 * 1e6,
            report.wait_seconds.p50 * 1e6,
            report.arrival_scv.unwrap_or(f64::NAN),
            (report.hold_seconds.stddev / report.hold_seconds.mean).powi(2),
            report.generator_delay_seconds.unwrap().mean * 1e3
        ));
    }
    table
}
