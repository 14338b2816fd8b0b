//! `histogram_quantile(φ, buckets)` over classic `_bucket{le}` series, as Prometheus 2.42's
//! `funcHistogramQuantile` and `bucketQuantile` compute it: buckets grouped by every label but
//! `le` (the metric name included), `le` parsed as Go's `strconv.ParseFloat` does, buckets
//! sorted, equal bounds merged, counts made monotonic, then linear interpolation inside the
//! bucket holding the rank, with 0 as the lowest bucket's lower bound.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::series::{NAME_LABEL, SeriesLabels};

use super::{EvalError, Sample};

/// The bucket label.
const LE: &str = "le";

/// Evaluates `histogram_quantile(q, samples)`.
pub fn histogram_quantile(q: f64, samples: Vec<Sample>) -> Result<Vec<Sample>, EvalError> {
    // By every label but `le`, name included, as Prometheus' signature; the answer drops both.
    let mut groups: BTreeMap<SeriesLabels, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in samples {
        // A missing or malformed `le` is skipped, as Prometheus does.
        let Some(bound) = sample.labels.get(LE).and_then(|le| parse_go_float(le)) else {
            continue;
        };
        let mut labels = Arc::unwrap_or_clone(sample.labels);
        labels.remove(LE);
        groups
            .entry(labels)
            .or_default()
            .push((bound, sample.value));
    }
    let mut out: Vec<Sample> = Vec::with_capacity(groups.len());
    for (mut labels, buckets) in groups {
        labels.remove(NAME_LABEL);
        out.push(Sample {
            labels: Arc::new(labels),
            value: bucket_quantile(q, buckets),
        });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    if out.windows(2).any(|w| w[0].labels == w[1].labels) {
        return Err(EvalError::DuplicateLabelset);
    }
    Ok(out)
}

/// Prometheus' bucketQuantile over (upper bound, cumulative count) pairs.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort.Sort on `<` is not stable, but only bounds that compare equal can tie, and those
    // are merged next; NaN bounds compare as Go's `<` does (never less).
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let buckets = coalesce(buckets);
    let buckets = monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket: the first whose count reaches the rank.
    let b = buckets[..buckets.len() - 1].partition_point(|bucket| bucket.1 < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Merges buckets of equal upper bound by adding their counts (the input is sorted).
fn coalesce(buckets: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match out.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => out.push((bound, count)),
        }
    }
    out
}

/// Raises every count to at least the one before it: the envelope Prometheus takes when buckets
/// were not scraped atomically.
fn monotonic(mut buckets: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut max = buckets[0].1;
    for bucket in &mut buckets[1..] {
        if bucket.1 > max {
            max = bucket.1;
        } else if bucket.1 < max {
            bucket.1 = max;
        }
    }
    buckets
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal with optional exponent, `inf`/`infinity`/`nan` in
/// any case with an optional sign, and hexadecimal floats (`0x1p-2`, with `_` between digits).
/// Rust's parser agrees on the decimal forms; the hexadecimal ones are read here.
fn parse_go_float(text: &str) -> Option<f64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'+' => (false, &text[1..]),
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    let magnitude = if body.len() > 2 && body[..2].eq_ignore_ascii_case("0x") {
        parse_hex_float(&body[2..])?
    } else {
        // Rust takes "infinity"/"inf"/"nan" in any case as Go does, but not a second sign.
        if body.starts_with(['+', '-']) || body.contains('_') {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The part after `0x` of a Go hexadecimal float: hex digits with at most one point, then a
/// mandatory `p` and a decimal exponent of two.
fn parse_hex_float(text: &str) -> Option<f64> {
    let (mantissa, exponent) = text.split_once(['p', 'P'])?;
    // Underscores only between digits (Go's underscoreOK, simplified to that rule).
    let clean = |s: &str| -> Option<String> {
        if s.starts_with('_') || s.ends_with('_') || s.contains("__") {
            return None;
        }
        Some(s.replace('_', ""))
    };
    let mantissa = clean(mantissa)?;
    let exponent: i32 = clean(exponent)?.parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((&mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in whole.chars() {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in fraction.chars() {
        value += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(value * 2f64.powi(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(&str, f64)]) -> Vec<Sample> {
        pairs
            .iter()
            .map(|(le, v)| Sample {
                labels: Arc::new(SeriesLabels::from([
                    (NAME_LABEL.to_string(), "x_bucket".to_string()),
                    ("job".to_string(), "a".to_string()),
                    (LE.to_string(), le.to_string()),
                ])),
                value: *v,
            })
            .collect()
    }

    fn quantile(q: f64, pairs: &[(&str, f64)]) -> f64 {
        let out = histogram_quantile(q, buckets(pairs)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            *out[0].labels,
            SeriesLabels::from([("job".into(), "a".into())])
        );
        out[0].value
    }

    // Powers of two keep the expected values exact.
    const TYPICAL: &[(&str, f64)] = &[("0.25", 10.0), ("0.5", 30.0), ("1", 40.0), ("+Inf", 40.0)];

    #[test]
    fn interpolates_inside_the_bucket_of_the_rank() {
        // Rank 20 of 40 lies halfway through (0.25, 0.5]: 10 of its 20.
        assert_eq!(quantile(0.5, TYPICAL), 0.375);
        // The lowest bucket starts at 0.
        assert_eq!(quantile(0.125, TYPICAL), 0.125);
        assert_eq!(quantile(1.0, TYPICAL), 1.0);
        assert_eq!(quantile(0.0, TYPICAL), 0.0);
    }

    #[test]
    fn the_inf_bucket_answers_with_the_highest_finite_bound() {
        let pairs = [("0.25", 10.0), ("1", 20.0), ("+Inf", 40.0)];
        assert_eq!(quantile(0.9, &pairs), 1.0);
    }

    #[test]
    fn out_of_range_and_degenerate_inputs() {
        assert_eq!(quantile(-0.1, TYPICAL), f64::NEG_INFINITY);
        assert_eq!(quantile(1.1, TYPICAL), f64::INFINITY);
        assert!(quantile(f64::NAN, TYPICAL).is_nan());
        // No +Inf bucket, only the +Inf bucket, no observations.
        assert!(quantile(0.5, &[("0.1", 1.0), ("1", 2.0)]).is_nan());
        assert!(quantile(0.5, &[("+Inf", 5.0)]).is_nan());
        assert!(quantile(0.5, &[("1", 0.0), ("+Inf", 0.0)]).is_nan());
    }

    #[test]
    fn unsorted_duplicate_and_non_monotonic_buckets() {
        // Unsorted, with `le` spelled two ways for one bound (merged), and a dip (raised).
        let pairs = [
            ("+Inf", 40.0),
            ("1.0", 25.0),
            ("0.5", 30.0),
            ("0.25", 10.0),
            ("1", 0.0),
        ];
        // After merging 1 and 1.0 (25) and the envelope, [0.25:10, 0.5:30, 1:30, +Inf:40].
        assert_eq!(quantile(0.5, &pairs), 0.375);
        assert_eq!(quantile(0.8, &pairs), 1.0);
    }

    #[test]
    fn a_non_positive_lowest_bound_is_returned_as_is() {
        let pairs = [("-1", 10.0), ("0", 20.0), ("+Inf", 20.0)];
        assert_eq!(quantile(0.25, &pairs), -1.0);
        assert_eq!(quantile(0.75, &pairs), -0.5);
    }

    #[test]
    fn le_is_parsed_as_go_parses_floats() {
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_go_float("NaN").unwrap().is_nan());
        assert_eq!(parse_go_float("0x1p-2"), Some(0.25));
        assert_eq!(parse_go_float("0x1_0p0"), Some(16.0));
        assert_eq!(parse_go_float("1e3"), Some(1000.0));
        assert_eq!(parse_go_float(".5"), Some(0.5));
        for bad in ["", "abc", "1_0", "+-1", "0x1", " 1"] {
            assert_eq!(parse_go_float(bad), None, "{bad}");
        }
    }

    #[test]
    fn series_without_le_are_skipped_and_groups_keep_their_labels() {
        let mut samples = buckets(TYPICAL);
        samples.push(Sample {
            labels: Arc::new(SeriesLabels::from([(
                NAME_LABEL.to_string(),
                "x_bucket".to_string(),
            )])),
            value: 1.0,
        });
        let out = histogram_quantile(0.5, samples).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn two_names_with_the_same_labels_collide() {
        let mut samples = buckets(TYPICAL);
        samples.extend(buckets(TYPICAL).into_iter().map(|mut s| {
            Arc::make_mut(&mut s.labels).insert(NAME_LABEL.into(), "y_bucket".into());
            s
        }));
        let error = histogram_quantile(0.5, samples).unwrap_err();
        assert!(matches!(error, EvalError::DuplicateLabelset), "{error}");
    }
}
