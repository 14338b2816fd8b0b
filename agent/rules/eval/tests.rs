//! The evaluator against hand-computed Prometheus answers.

use super::*;

const MIN: Millis = 60_000;

fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A series' labels and its values, one minute apart from 0.
type Input<'a> = (&'a [(&'a str, &'a str)], &'a [f64]);

fn store(series: &[Input]) -> SeriesStore {
    let mut store = SeriesStore::new(60 * MIN);
    for (l, values) in series {
        for (i, v) in values.iter().enumerate() {
            store.append(labels(l), i as Millis * MIN, *v);
        }
    }
    store
}

fn query(store: &SeriesStore, expr: &str, t: Millis) -> Vec<(SeriesLabels, f64)> {
    let expr = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut out: Vec<_> = eval_vector(&expr, store, t)
        .unwrap()
        .into_iter()
        .map(|s| (Arc::unwrap_or_clone(s.labels), s.value))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn one(store: &SeriesStore, expr: &str, t: Millis) -> f64 {
    let out = query(store, expr, t);
    assert_eq!(out.len(), 1, "{expr}: {out:?}");
    out[0].1
}

const UP_A: &[(&str, &str)] = &[("__name__", "up"), ("pool", "a"), ("target", "t")];
const UP_B: &[(&str, &str)] = &[("__name__", "up"), ("pool", "b"), ("target", "t")];

#[test]
fn instant_selection_uses_the_five_minute_lookback() {
    let s = store(&[(UP_A, &[1.0, 2.0])]);
    assert_eq!(one(&s, "up", 90_000), 2.0);
    assert_eq!(
        one(&s, "up", MIN + 5 * MIN),
        2.0,
        "exactly 5 minutes back still counts"
    );
    assert!(query(&s, "up", MIN + 5 * MIN + 1).is_empty());
    assert!(query(&s, "up{pool=\"b\"}", MIN).is_empty());
    assert_eq!(one(&s, "up{pool=~\"a|c\"}", MIN), 2.0);
}

#[test]
fn a_staleness_marker_ends_a_series_at_once() {
    let mut s = store(&[(UP_A, &[1.0])]);
    s.append(labels(UP_A), MIN, crate::series::stale_marker());
    assert!(query(&s, "up", MIN + 1000).is_empty());
}

#[test]
fn rate_and_increase_extrapolate_as_prometheus() {
    // 0+10x10 one minute apart: rate over 5m at 10m is 50 / 300 s.
    let values: Vec<f64> = (0..=10).map(|i| f64::from(i) * 10.0).collect();
    let s = store(&[(&[("__name__", "x_total"), ("pool", "a")], &values)]);
    assert!((one(&s, "rate(x_total[5m])", 10 * MIN) - 50.0 / 300.0).abs() < 1e-12);
    assert!((one(&s, "increase(x_total[5m])", 10 * MIN) - 50.0).abs() < 1e-9);
    // Half a step off the samples: 40 over the 240 s sampled, extrapolated 30 s to each edge.
    let shifted = one(&s, "increase(x_total[5m])", 10 * MIN + 30_000);
    assert!((shifted - 40.0 * (300.0 / 240.0)).abs() < 1e-9, "{shifted}");
    // The metric name goes, the other labels stay.
    assert_eq!(
        query(&s, "rate(x_total[5m])", 10 * MIN)[0].0,
        labels(&[("pool", "a")])
    );
}

#[test]
fn counter_resets_are_corrected() {
    let s = store(&[(&[("__name__", "x_total")], &[5.0, 10.0, 2.0, 7.0])]);
    // 5 → 10, reset, 2 → 7: an increase of 5 + 10 + ... = 12 over 3 minutes, from a counter
    // whose first value 5 limits extrapolation towards zero.
    let v = one(&s, "increase(x_total[3m])", 3 * MIN);
    assert!((v - 12.0).abs() < 1e-9, "{v}");
    let d = one(&s, "delta(x_total[3m])", 3 * MIN);
    assert!((d - 2.0).abs() < 1e-9, "delta does not correct resets: {d}");
}

#[test]
fn over_time_functions_and_regression() {
    let s = store(&[(&[("__name__", "g")], &[1.0, 3.0, 5.0, 7.0])]);
    assert_eq!(one(&s, "avg_over_time(g[3m])", 3 * MIN), 4.0);
    assert_eq!(one(&s, "min_over_time(g[2m])", 3 * MIN), 3.0);
    assert_eq!(one(&s, "max_over_time(g[10m])", 3 * MIN), 7.0);
    assert!((one(&s, "deriv(g[3m])", 3 * MIN) - 2.0 / 60.0).abs() < 1e-12);
    // Two per minute onwards: 7 now, 7 + 2 * 10 in ten minutes.
    assert!((one(&s, "predict_linear(g[3m], 600)", 3 * MIN) - 27.0).abs() < 1e-9);
}

#[test]
fn aggregations_group_by_and_without() {
    let s = store(&[(UP_A, &[1.0]), (UP_B, &[3.0])]);
    assert_eq!(one(&s, "sum(up)", 0), 4.0);
    assert_eq!(one(&s, "avg(up)", 0), 2.0);
    assert_eq!(one(&s, "count(up)", 0), 2.0);
    assert_eq!(one(&s, "min(up)", 0), 1.0);
    assert_eq!(one(&s, "max by (target) (up)", 0), 3.0);
    assert_eq!(
        query(&s, "sum by (target) (up)", 0),
        vec![(labels(&[("target", "t")]), 4.0)]
    );
    let without = query(&s, "sum without (target) (up)", 0);
    assert_eq!(without.len(), 2);
    assert_eq!(without[0].0, labels(&[("pool", "a")]));
}

#[test]
fn binary_operators_match_like_prometheus() {
    let used = &[("__name__", "used"), ("pool", "a"), ("state", "used")][..];
    let size = &[("__name__", "size"), ("pool", "a")][..];
    let s = store(&[(used, &[4.0]), (size, &[5.0]), (UP_A, &[1.0])]);
    assert_eq!(
        query(&s, "used / ignoring(state) size", 0),
        vec![(labels(&[("pool", "a")]), 0.8)]
    );
    assert_eq!(
        query(&s, "used / on(pool) size", 0),
        vec![(labels(&[("pool", "a")]), 0.8)]
    );
    assert!(
        query(&s, "used / size", 0).is_empty(),
        "label sets differ without on/ignoring"
    );
    // A filter keeps the metric name and the left value; `bool` answers 0/1 without it.
    assert_eq!(query(&s, "size > 4", 0), vec![(labels(size), 5.0)]);
    assert_eq!(
        query(&s, "size > bool 9", 0),
        vec![(labels(&[("pool", "a")]), 0.0)]
    );
    assert_eq!(query(&s, "2 < size", 0), vec![(labels(size), 5.0)]);
    assert_eq!(one(&s, "size - 1", 0), 4.0);
    assert_eq!(one(&s, "-size", 0), -5.0);
    assert_eq!(one(&s, "2 ^ 3 + size % 3", 0), 10.0);
}

#[test]
fn set_operators() {
    let s = store(&[
        (UP_A, &[1.0]),
        (UP_B, &[0.0]),
        (
            &[("__name__", "busy"), ("pool", "a"), ("target", "t")],
            &[1.0],
        ),
    ]);
    assert_eq!(query(&s, "up and busy", 0).len(), 1);
    assert_eq!(query(&s, "up unless busy", 0)[0].0["pool"], "b");
    assert_eq!(query(&s, "busy or up", 0).len(), 2);
    assert_eq!(
        query(&s, "up == 0 and on(target) busy", 0)[0].0["pool"],
        "b"
    );
}

#[test]
fn absent_and_clamps() {
    let s = store(&[(UP_A, &[7.0])]);
    assert_eq!(
        query(&s, "absent(nope{target=\"x\", a=~\"y\"})", 0),
        vec![(labels(&[("target", "x")]), 1.0)]
    );
    assert!(query(&s, "absent(up)", 0).is_empty());
    assert_eq!(one(&s, "clamp_max(up, 5)", 0), 5.0);
    assert_eq!(one(&s, "clamp_min(up, 9)", 0), 9.0);
    assert_eq!(one(&s, "ceil(up / 2)", 0), 4.0);
}

fn error(store: &SeriesStore, expr: &str, t: Millis) -> EvalError {
    let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    eval_vector(&parsed, store, t).expect_err(expr)
}

const PENDING_A1: &[(&str, &str)] = &[("__name__", "pending"), ("pool", "p1"), ("target", "a")];
const PENDING_A2: &[(&str, &str)] = &[("__name__", "pending"), ("pool", "p2"), ("target", "a")];
const SIZE_A1: &[(&str, &str)] = &[("__name__", "size"), ("pool", "p1"), ("target", "a")];
const SIZE_B1: &[(&str, &str)] = &[("__name__", "size"), ("pool", "p1"), ("target", "b")];

#[test]
fn vector_matching_checks_in_prometheus_order() {
    // Nothing on one side: nothing, whatever the other side holds.
    let s = store(&[(PENDING_A1, &[1.0]), (PENDING_A2, &[4.0])]);
    assert!(query(&s, "size + on(target) pending", 0).is_empty());
    assert!(query(&s, "pending + on(target) size", 0).is_empty());

    // The right side is checked whole once the left has a series, matching or not.
    let s = store(&[
        (PENDING_A1, &[1.0]),
        (PENDING_A2, &[4.0]),
        (SIZE_B1, &[10.0]),
    ]);
    let err = error(&s, "size + on(target) pending", 0);
    assert!(
        matches!(&err, EvalError::ManyToMany { group, .. } if group == "{target=\"a\"}"),
        "{err}"
    );
    assert!(err.to_string().contains(
        "on the right hand-side of the operation: [{__name__=\"pending\", pool=\"p2\", \
         target=\"a\"}, {__name__=\"pending\", pool=\"p1\", target=\"a\"}];many-to-many"
    ));

    // Two left series of one group are many-to-one only when both reach the result.
    let s = store(&[
        (PENDING_A1, &[1.0]),
        (PENDING_A2, &[40.0]),
        (SIZE_A1, &[10.0]),
    ]);
    assert_eq!(
        query(&s, "pending > on(target) size", 0),
        vec![(labels(&[("target", "a")]), 40.0)]
    );
    assert_eq!(
        error(&s, "pending > bool on(target) size", 0),
        EvalError::ManyToOne
    );
    assert_eq!(
        error(&s, "pending - on(target) size", 0),
        EvalError::ManyToOne
    );
    let s = store(&[
        (PENDING_A1, &[1.0]),
        (PENDING_A2, &[4.0]),
        (SIZE_A1, &[10.0]),
    ]);
    assert!(query(&s, "pending > on(target) size", 0).is_empty());
    // Set operators never complain.
    assert_eq!(query(&s, "pending and on(target) size", 0).len(), 2);
}

#[test]
fn one_label_set_twice_once_the_name_is_gone_is_an_error() {
    let opened = &[("__name__", "opened_total"), ("pool", "p1")][..];
    let closed = &[("__name__", "closed_total"), ("pool", "p1")][..];
    let other = &[("__name__", "closed_total"), ("pool", "p2")][..];
    let s = store(&[(opened, &[1.0, 2.0]), (closed, &[5.0, 6.0])]);
    let both = "{__name__=~\"opened_total|closed_total\"}";
    for expr in [
        format!("-{both}"),
        format!("abs({both})"),
        format!("clamp_max({both}, 1)"),
        format!("rate({both}[5m])"),
        format!("{both} * 2"),
        format!("2 * ({both})"),
        format!("{both} > bool 0"),
        format!("{both} + on(__name__, pool) {both}"),
    ] {
        assert_eq!(
            error(&s, &expr, MIN),
            EvalError::DuplicateLabelset,
            "{expr}"
        );
    }
    // A filter keeps the name; and names that differ in other labels do not collide.
    assert_eq!(query(&s, &format!("{both} > 0"), MIN).len(), 2);
    let s = store(&[(opened, &[1.0]), (other, &[5.0])]);
    assert_eq!(query(&s, &format!("-{both}"), 0).len(), 2);
}

/// A selector times a scalar is named as any arithmetic result, without the metric name, by
/// the labels its series keeps for that: two evaluations share them, no evaluation copies them.
#[test]
fn arithmetic_with_a_scalar_shares_the_series_labels_without_the_name() {
    let s = store(&[(UP_A, &[1.0, 2.0])]);
    for text in [
        "1.5 * up",
        "(up) * 1.5",
        "up * (3 / 2)",
        "1.5 * up > bool 0",
    ] {
        let expr = parse(text).unwrap();
        let [first, again] = [0, 1].map(|_| eval_vector(&expr, &s, MIN).unwrap());
        assert_eq!(first.len(), 1, "{text}");
        assert_eq!(
            *first[0].labels,
            labels(&[("pool", "a"), ("target", "t")]),
            "{text}"
        );
        assert!(Arc::ptr_eq(&first[0].labels, &again[0].labels), "{text}");
    }
    assert_eq!(one(&s, "1.5 * up", MIN), 3.0);
    assert_eq!(one(&s, "up - 0.5", MIN), 1.5);
}

#[test]
fn clamps_follow_go_max_and_min() {
    let nan = &[("__name__", "ratio"), ("pool", "p1")][..];
    let s = store(&[(nan, &[f64::NAN]), (UP_A, &[10.0])]);
    assert!(one(&s, "clamp_max(up, NaN)", 0).is_nan());
    assert!(one(&s, "clamp_min(ratio, 0)", 0).is_nan());
    assert_eq!(one(&s, "clamp_max(ratio, -Inf)", 0), f64::NEG_INFINITY);
    assert_eq!(one(&s, "clamp_min(ratio, Inf)", 0), f64::INFINITY);
    assert!(go_max(0.0, -0.0).is_sign_positive() && go_max(-0.0, 0.0).is_sign_positive());
    assert!(go_min(0.0, -0.0).is_sign_negative() && go_min(-0.0, 0.0).is_sign_negative());
}

#[test]
fn absent_labels_as_prometheus_creates_them() {
    let s = store(&[]);
    let table = [
        (r#"absent(x{a="1", a!="1"})"#, vec![]),
        (r#"absent(x{a!="2", a="1"})"#, vec![("a", "1")]),
        (r#"absent(x{a="1", a="1"})"#, vec![]),
        (r#"absent(x{a="1", a="2", b="3"})"#, vec![("b", "3")]),
        (r#"absent(x{a="", b="3"})"#, vec![("b", "3")]),
        (r#"absent(x{a=~"1"})"#, vec![]),
        (r#"absent((x{a="1"}))"#, vec![("a", "1")]),
        (r#"absent(sum(x{a="1"}))"#, vec![]),
        (r#"absent({__name__="x", a="1"})"#, vec![("a", "1")]),
    ];
    for (expr, want) in table {
        assert_eq!(query(&s, expr, 0), vec![(labels(&want), 1.0)], "{expr}");
    }
}

#[test]
fn infinities_average_as_in_prometheus_in_any_order() {
    let inf = &[("__name__", "g"), ("pool", "p1")][..];
    let one_ = &[("__name__", "g"), ("pool", "p2")][..];
    let s = store(&[(inf, &[f64::INFINITY]), (one_, &[1.0])]);
    let expr = parse("avg(g)").unwrap();
    for rank in [
        &(|l: &SeriesLabels| u64::from(l["pool"] == "p2")) as &dyn Fn(&SeriesLabels) -> u64,
        &|l: &SeriesLabels| u64::from(l["pool"] == "p1"),
    ] {
        let got = eval_vector_ranked(&expr, &s, 0, rank).unwrap();
        assert_eq!(got[0].value, f64::INFINITY);
    }
    assert!(mean_step(f64::INFINITY, f64::NEG_INFINITY, 2).is_nan());
    assert!(mean_step(f64::INFINITY, f64::NAN, 2).is_nan());
    assert_eq!(
        mean_over_time(&[(0, 1.0), (1, f64::INFINITY), (2, 5.0)]),
        f64::INFINITY
    );
}

#[test]
fn regression_is_exact_on_flat_series() {
    let ratio = &[("__name__", "ratio"), ("pool", "p1")][..];
    let s = store(&[(ratio, &[-0.6, -0.6, -0.6])]);
    assert_eq!(one(&s, "deriv(ratio[2m])", 2 * MIN), 0.0);
    assert_eq!(one(&s, "predict_linear(ratio[2m], 600)", 2 * MIN), -0.6);
    assert!(query(&s, "deriv(ratio[2m]) < 0", 2 * MIN).is_empty());
    let (slope, intercept) = linear_regression(&[(0, f64::INFINITY), (1000, f64::INFINITY)], 0);
    assert!(slope.is_nan() && intercept.is_nan());
}

#[test]
fn powers_and_rates_round_as_go_does() {
    // Go's math.Pow, not the C library's: these differ in the last bit.
    assert_eq!(go_pow(1.7, 5.0), 14.198569999999997);
    assert_eq!(go_pow(0.7, 11.0), 0.019773267429999984);
    assert_eq!(go_pow(1.1, 7.0), 1.9487171000000012);
    assert_eq!(go_pow(2.0, -2.0), 0.25);
    assert_eq!(go_pow(4.0, 0.5), 2.0);
    assert!(go_pow(-8.0, 1.0 / 3.0).is_nan());
    assert_eq!(go_pow(0.0, -1.0), f64::INFINITY);
    assert_eq!(go_pow(-0.0, -1.0), f64::NEG_INFINITY);
    assert_eq!(go_pow(f64::NEG_INFINITY, 3.0), f64::NEG_INFINITY);
    assert_eq!(go_pow(2.0, 1100.0), f64::INFINITY);
    assert_eq!(go_pow(2.0, -1074.0), f64::from_bits(1));
    for x in [1.0, 0.75, 3.0e-310, -5.5, 1e300] {
        let (frac, exp) = frexp(x);
        assert!((0.5..1.0).contains(&frac.abs()), "{x}");
        assert_eq!(ldexp(frac, exp), x);
    }
    // Seconds as Go's Duration.Seconds() adds them: whole seconds, then the fraction.
    assert_eq!(go_seconds(1_100), 1.0 + 0.1);
    assert_eq!(go_seconds(300_000), 300.0);
}

#[test]
fn constructs_outside_the_subset_are_named() {
    for (expr, why) in [
        ("rate(x[5m] offset 1m)", "offset"),
        ("max_over_time(rate(x[1m])[5m:1m])", "subquer"),
        ("topk(3, x)", "topk"),
        ("quantile_over_time(0.9, x[5m])", "quantile_over_time"),
        ("x * on(a) group_left(b) y", "group_left"),
        ("x @ 100", "@ modifier"),
        (
            "label_replace(x, \"a\", \"b\", \"c\", \"d\")",
            "label_replace",
        ),
    ] {
        let err = parse(expr).unwrap_err();
        assert!(err.contains(why), "{expr}: {err}");
    }
}

#[test]
fn metric_names_are_collected() {
    let expr = parse("sum(rate(a_total[5m])) / on() b and {__name__=\"c\"}").unwrap();
    assert_eq!(metric_names(&expr), vec!["a_total", "b", "c"]);
}

#[test]
fn reads_name_each_selector_and_its_range() {
    let expr = parse(
        "rate(a_total[5m]) > max_over_time(a_total[10m]) and b and max_over_time({job=\"x\"}[90s])",
    )
    .unwrap();
    assert_eq!(
        reads(&expr),
        vec![
            (Some("a_total".into()), 300_000),
            (Some("a_total".into()), 600_000),
            (Some("b".into()), 0),
            (None, 90_000),
        ]
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of PromQL, valid and not, that the generator strings together.
    const FRAGMENTS: &[&str] = &[
        "poolwatch_pool_size",
        "db_client_connection_count",
        "up",
        "x_total",
        "{",
        "}",
        "(",
        ")",
        "[5m]",
        "[1s]",
        "[0s]",
        "target=\"t\"",
        "pool=~\"a.*\"",
        "pool!=\"\"",
        ",",
        " + ",
        " - ",
        " * ",
        " / ",
        " % ",
        " ^ ",
        " > ",
        " < bool ",
        " == ",
        " and ",
        " or ",
        " unless ",
        " on(pool) ",
        " ignoring(target) ",
        "sum by (pool) ",
        "avg without (pool) ",
        "count ",
        "min ",
        "max ",
        "rate(",
        "increase(",
        "delta(",
        "deriv(",
        "avg_over_time(",
        "min_over_time(",
        "max_over_time(",
        "predict_linear(",
        ", 600)",
        "absent(",
        "clamp_min(",
        "clamp_max(",
        ", 2)",
        "ceil(",
        "abs(",
        "1",
        "0",
        "-1",
        "0.5",
        "NaN",
        "Inf",
        "1e308",
        "-Inf",
        "\"str\"",
        "offset 5m",
        "@ 1",
        "[5m:1m]",
        "topk(2, ",
        " group_left ",
    ];

    fn store() -> SeriesStore {
        let mut s = SeriesStore::new(i64::MAX / 4);
        for (i, name) in [
            "poolwatch_pool_size",
            "db_client_connection_count",
            "up",
            "x_total",
        ]
        .iter()
        .enumerate()
        {
            for pool in ["a", "b"] {
                for step in 0..20 {
                    let value = match (i + step) % 5 {
                        0 => f64::NAN,
                        1 => 0.0,
                        2 => -3.5,
                        _ => (step * 7) as f64,
                    };
                    s.append(
                        labels(&[("__name__", name), ("pool", pool), ("target", "t")]),
                        step as Millis * 15_000,
                        value,
                    );
                }
            }
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn built_from_fragments(picks in proptest::collection::vec(0..FRAGMENTS.len(), 1..14), t in 0i64..400_000) {
            let text: String = picks.iter().map(|&i| FRAGMENTS[i]).collect();
            if let Ok(expr) = parse(&text) {
                let _ = eval_vector(&expr, &store(), t);
            }
        }

        #[test]
        fn arbitrary_text(text in "\\PC{0,60}") {
            if let Ok(expr) = parse(&text) {
                let _ = eval_vector(&expr, &store(), 100_000);
            }
        }
    }
}
