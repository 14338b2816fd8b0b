//! Values written the way Prometheus 2.42 (a Go program) writes them in its messages: quoted
//! strings, label sets, floats and durations. `poolwatch rules test` reports failures in
//! promtool's words, so that the two tools' reports read (and parse) the same.

use std::fmt::Write as _;
use std::time::Duration;

use super::testfile::DURATION_UNITS;
use crate::series::SeriesLabels;

/// Go's `strconv.Quote`: printable characters as they are, the rest escaped.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = if (c as u32) < 0x10000 {
                    write!(out, "\\u{:04x}", c as u32)
                } else {
                    write!(out, "\\U{:08x}", c as u32)
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `labels.Labels.String()`: `{a="1", b="2"}`, pairs given in label order.
pub fn labels<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name.as_ref());
        out.push('=');
        out.push_str(&quote(value.as_ref()));
    }
    out.push('}');
    out
}

/// A label set as [`labels`] writes it.
pub fn label_set(set: &SeriesLabels) -> String {
    labels(set)
}

/// `strconv.FormatFloat(v, 'E', -1, 64)`: the shortest digits that read back as `v`, with an
/// exponent of at least two digits (`1.5E+00`, `NaN`, `+Inf`).
pub fn float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Rust's `{:E}` gives the same shortest digits, with a bare exponent (`1.5E0`).
    let text = format!("{v:E}");
    let (mantissa, exponent) = text.split_once('E').unwrap_or((&text, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exponent),
    };
    format!("{mantissa}E{sign}{digits:0>2}")
}

/// `model.Duration.String()`: `0s`, `90s` as `1m30s`, `1h5m`.
pub fn duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in DURATION_UNITS {
        if ms >= size {
            let _ = write!(out, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    out
}

/// Go's `time.Duration.String()` for whole milliseconds: `0s`, `500ms`, `1m0s`, `1h0m1.5s`.
pub fn go_duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (hours, minutes, seconds, fraction) =
        (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = sign.to_string();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if ms >= 60_000 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        let table = [
            (1.0, "1E+00"),
            (0.0, "0E+00"),
            (-0.0, "-0E+00"),
            (1.5, "1.5E+00"),
            (0.1, "1E-01"),
            (-40.0, "-4E+01"),
            (1e300, "1E+300"),
            (1.0 / 3.0, "3.333333333333333E-01"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (123456789.0, "1.23456789E+08"),
        ];
        for (v, want) in table {
            assert_eq!(float_e(v), want, "{v}");
        }
    }

    #[test]
    fn labels_quotes_and_durations() {
        let set: SeriesLabels = [("a", "x\"y"), ("b", "1\n")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(label_set(&set), r#"{a="x\"y", b="1\n"}"#);
        assert_eq!(label_set(&SeriesLabels::new()), "{}");
        assert_eq!(quote("é\u{1}"), "\"é\\x01\"");
        for (ms, want) in [
            (0, "0s"),
            (90_000, "1m30s"),
            (3_900_000, "1h5m"),
            (1_500, "1s500ms"),
        ] {
            assert_eq!(duration(Duration::from_millis(ms)), want);
        }
        let table = [
            (0, "0s"),
            (500, "500ms"),
            (1_500, "1.5s"),
            (60_000, "1m0s"),
            (90_000, "1m30s"),
            (3_600_000, "1h0m0s"),
            (3_601_250, "1h0m1.25s"),
        ];
        for (ms, want) in table {
            assert_eq!(go_duration(ms), want);
        }
    }
}
