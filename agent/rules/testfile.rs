//! Reads the unit-test files of `promtool test rules` (Prometheus v2.42 semantics) so that
//! poolwatch can run the same files with its own rule evaluator.
//!
//! Besides the YAML structure there are three small grammars: the Prometheus duration
//! (`5m`, `1h30m`), the series notation (`name{label="value"}`) and the expanding values
//! notation (`1+2x3 _x2 stale`). They follow `promql/parser/lex.go`, `generated_parser.y`
//! and `parse.go` down to the odd corners, because a file that promtool accepts must mean
//! the same thing here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// One sample of an input series: a number or Prometheus's staleness marker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeriesValue {
    Value(f64),
    Stale,
}

/// The lexer's whitespace (`isSpace`); Unicode spaces are not separators.
const WS: [char; 4] = [' ', '\t', '\n', '\r'];

/// promtool would try to allocate `1x99999999999` and die; we refuse instead.
const MAX_EXPANDED: u64 = 1 << 24;

#[derive(Clone, Copy, PartialEq)]
enum Tok<'a> {
    Add,
    Sub,
    Times,
    Blank,
    Num(&'a str),
    Stale,
}

/// Tokens of one whitespace-free item, as the lexer reads them in series-description mode.
fn lex_item(item: &str) -> Result<Vec<Tok<'_>>, String> {
    let b = item.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() {
        let start = i;
        let digits = |i: &mut usize| {
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
        };
        match b[i] {
            b'+' => out.push(Tok::Add),
            b'-' => out.push(Tok::Sub),
            // `x` and `_` are matched before letters, so they never start a word.
            b'x' => out.push(Tok::Times),
            b'_' => out.push(Tok::Blank),
            b'{' if b.get(i + 1) == Some(&b'{') => {
                return Err("native histogram values ({{...}}) are not supported".into());
            }
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                // scanNumber: digits [. digits] [eE [+-] digits]; no hex in this mode.
                digits(&mut i);
                if b.get(i) == Some(&b'.') {
                    i += 1;
                    digits(&mut i);
                }
                if matches!(b.get(i), Some(b'e' | b'E')) {
                    i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
                    digits(&mut i);
                }
                // Only `x` (repetition) or a non-word byte may follow a number.
                if b.get(i).is_some_and(|&n| n != b'x' && word(n)) {
                    return Err(format!("bad number syntax in {item:?}"));
                }
                out.push(Tok::Num(&item[start..i]));
                continue;
            }
            c if c.is_ascii_alphabetic() => {
                // A word swallows letters, digits, `_` and `:`, so `stalex3` and `Infx3`
                // are single invalid words, exactly as in promtool.
                while b.get(i).is_some_and(|&c| word(c) || c == b':') {
                    i += 1;
                }
                let w = &item[start..i];
                if w == "stale" {
                    out.push(Tok::Stale);
                } else if w.eq_ignore_ascii_case("inf") || w.eq_ignore_ascii_case("nan") {
                    out.push(Tok::Num(w));
                } else {
                    return Err(format!("unexpected {w:?}, expected number or \"stale\""));
                }
                continue;
            }
            _ => return Err(format!("unexpected character in {item:?}")),
        }
        i += 1;
    }
    Ok(out)
}

/// `parser.number`: Go's `ParseInt(s, 0, 64)` first, so `010` is octal 8, then `ParseFloat`.
fn number(tok: &str) -> Result<f64, String> {
    if tok.len() > 1
        && tok.bytes().all(|c| (b'0'..=b'7').contains(&c))
        && tok.starts_with('0')
        && let Ok(n) = i64::from_str_radix(tok, 8)
    {
        return Ok(n as f64);
    }
    match tok.parse::<f64>() {
        // Go reports `1e400` as out of range; Rust would quietly give inf.
        Ok(v) if v.is_infinite() && !tok.eq_ignore_ascii_case("inf") => {
            Err(format!("number out of range: {tok:?}"))
        }
        Ok(v) => Ok(v),
        Err(_) => Err(format!("error parsing number: {tok:?}")),
    }
}

/// `uint` is Go's `ParseUint(s, 10, 64)`: digits only.
fn repeat(tok: &str) -> Result<u64, String> {
    match tok.parse::<u64>() {
        Ok(n) if tok.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => Err(format!("invalid repetition {tok:?}")),
    }
}

/// Expands the values notation: one entry per step, None = missing sample.
///
/// `a+bxn` and `a-bxn` give n+1 values by repeated addition (as Go does, so rounding
/// matches), `axn` n+1 copies, but `_xn` only n gaps. `stale` cannot take `xn` (the lexer
/// reads `stalex3` as one word); `stale+bxn` is accepted and, as in Go, only its first entry
/// is the marker: arithmetic on the marker's NaN yields an ordinary NaN.
pub fn expand_values(text: &str) -> Result<Vec<Option<SeriesValue>>, String> {
    let mut out = Vec::new();
    for item in text.split(WS).filter(|s| !s.is_empty()) {
        let fail = |why: String| format!("bad series value {item:?}: {why}");
        let toks = lex_item(item).map_err(fail)?;
        // A leading sign belongs to a number only: `-_` and `-stale` are errors.
        let (sign, body) = match toks.as_slice() {
            [Tok::Sub, body @ ..] => (Some(-1.0), body),
            [Tok::Add, body @ ..] => (Some(1.0), body),
            body => (None, body),
        };
        let (first, rest) = match (sign, body) {
            (None, [Tok::Blank, rest @ ..]) => (None, rest),
            (None, [Tok::Stale, rest @ ..]) => (Some(SeriesValue::Stale), rest),
            (_, [Tok::Num(n), rest @ ..]) => {
                let v = sign.unwrap_or(1.0) * number(n).map_err(fail)?;
                (Some(SeriesValue::Value(v)), rest)
            }
            _ => return Err(fail("expected a number, \"_\" or \"stale\"".into())),
        };
        // generated_parser.y: `_xN` is N gaps (i < N) but `vxN` is N+1 values (i <= N).
        let times = |n: &str| repeat(n).map(|n| n.saturating_add(u64::from(first.is_some())));
        let (count, step) = match rest {
            [] => (1, None),
            [Tok::Times, Tok::Num(n)] => (times(n).map_err(fail)?, None),
            [
                op @ (Tok::Add | Tok::Sub),
                Tok::Num(b),
                Tok::Times,
                Tok::Num(n),
            ] if first.is_some() => {
                let b = if *op == Tok::Sub { -1.0 } else { 1.0 } * number(b).map_err(fail)?;
                (times(n).map_err(fail)?, Some(b))
            }
            _ => return Err(fail("expected xN, +BxN or -BxN after the value".into())),
        };
        if out.len() as u64 + count > MAX_EXPANDED {
            return Err(format!(
                "series values expand to more than {MAX_EXPANDED} samples"
            ));
        }
        let mut cur = match first {
            Some(SeriesValue::Value(v)) => v,
            _ => f64::NAN,
        };
        for k in 0..count {
            match step {
                Some(s) if k > 0 => {
                    cur += s;
                    out.push(Some(SeriesValue::Value(cur)));
                }
                _ => out.push(first),
            }
        }
    }
    Ok(out)
}

/// Reads a `"..."`, `'...'` or `` `...` `` label value with Go escapes from the start of `s`;
/// returns the value and the length consumed.
fn quoted(s: &str) -> Result<(String, usize), String> {
    const SIMPLE: &[u8] = b"a\x07b\x08f\x0cn\nr\rt\tv\x0b\\\\";
    let b = s.as_bytes();
    let (q, mut i, mut out) = (b[0], 1, Vec::new());
    let code = |from: usize, n: usize, radix: u32| {
        let d = s
            .get(from..from + n)
            .filter(|d| d.bytes().all(|c| c.is_ascii_hexdigit()));
        d.and_then(|d| u32::from_str_radix(d, radix).ok())
            .ok_or("bad escape sequence")
    };
    loop {
        let c = *b.get(i).ok_or("unterminated quoted string")?;
        i += 1;
        if c == q {
            let v = String::from_utf8(out).map_err(|_| "label value is not valid UTF-8")?;
            return Ok((v, i));
        } else if c == b'\n' && q != b'`' {
            return Err("unterminated quoted string".into());
        } else if c != b'\\' || q == b'`' {
            out.push(c);
            continue;
        }
        let e = *b.get(i).ok_or("unterminated quoted string")?;
        i += 1;
        if let Some(pair) = SIMPLE.chunks(2).find(|p| p[0] == e) {
            out.push(pair[1]);
        } else if e == q {
            out.push(q);
        } else if e.is_ascii_digit() || e == b'x' {
            // `\NNN` and `\xHH` are single bytes in Go strings, not code points.
            let (from, n, radix) = if e == b'x' { (i, 2, 16) } else { (i - 1, 3, 8) };
            let v = u8::try_from(code(from, n, radix)?).map_err(|_| "bad octal escape")?;
            out.push(v);
            i = from + n;
        } else if e == b'u' || e == b'U' {
            let n = if e == b'u' { 4 } else { 8 };
            let ch = char::from_u32(code(i, n, 16)?).ok_or("escape is not a Unicode scalar")?;
            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            i += n;
        } else {
            return Err(format!("unknown escape sequence \\{}", e as char));
        }
    }
}

/// `name{a="b"}` → labels including `__name__`.
///
/// Also takes `{__name__="m", a="b"}`, and `{}` or the empty string for the empty label set
/// (promtool's `ParseMetric` does, for `exp_samples` of aggregations). Labels with an empty
/// value are dropped, as Prometheus treats them as absent; a name before the braces wins
/// over a `__name__` inside them.
pub fn parse_series(text: &str) -> Result<BTreeMap<String, String>, String> {
    let fail = |why: &str| format!("bad series {text:?}: {why}");
    let mut rest = text.trim_start_matches(WS);
    let word_len = |s: &str, colon: bool| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':')))
            .unwrap_or(s.len())
    };
    let starts = |s: &str, colon: bool| {
        s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
    };
    let mut name = None;
    if starts(rest, true) {
        let (n, tail) = rest.split_at(word_len(rest, true));
        // These lex as keywords or numbers that the `metric_identifier` rule does not take.
        let not_names = "bool on ignoring group_left group_right atan2 inf nan";
        if not_names.split(' ').any(|w| w.eq_ignore_ascii_case(n)) {
            return Err(fail("that word cannot be a metric name"));
        }
        name = Some(n.to_string());
        rest = tail.trim_start_matches(WS);
    }
    let mut labels = BTreeMap::new();
    if let Some(tail) = rest.strip_prefix('{') {
        rest = tail.trim_start_matches(WS);
        while !rest.starts_with('}') {
            if !starts(rest, false) {
                return Err(fail("expected a label name"));
            }
            let (label, tail) = rest.split_at(word_len(rest, false));
            let tail = tail
                .trim_start_matches(WS)
                .strip_prefix('=')
                .ok_or_else(|| fail("expected \"=\""))?;
            let tail = tail.trim_start_matches(WS);
            if !tail.starts_with(['"', '\'', '`']) {
                return Err(fail("expected a quoted label value"));
            }
            let (value, used) = quoted(tail).map_err(|e| fail(&e))?;
            if labels.insert(label.to_string(), value).is_some() {
                return Err(fail("duplicate label name"));
            }
            rest = tail[used..].trim_start_matches(WS);
            if let Some(tail) = rest.strip_prefix(',') {
                rest = tail.trim_start_matches(WS);
            } else if !rest.starts_with('}') {
                return Err(fail("expected \",\" or \"}\""));
            }
        }
        rest = rest[1..].trim_start_matches(WS);
    }
    if !rest.is_empty() {
        return Err(fail("unexpected text after the series"));
    }
    labels.extend(name.map(|n| ("__name__".to_string(), n)));
    labels.retain(|_, v| !v.is_empty());
    Ok(labels)
}

/// The units of a Prometheus duration in milliseconds, biggest first; a year is 365 days.
pub const DURATION_UNITS: [(&str, u128); 7] = [
    ("y", 31_536_000_000),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Prometheus duration (`model.ParseDuration`): whole numbers of y, w, d, h, m, s, ms, each
/// at most once and in that order; `0` alone needs no unit; a year is 365 days.
pub fn parse_prometheus_duration(text: &str) -> Result<Duration, String> {
    match text {
        "" => return Err("empty duration string".into()),
        "0" => return Ok(Duration::ZERO),
        _ => {}
    }
    // Like the regexp `^(\d+y)?(\d+w)?...(\d+ms)?$`: each unit once, biggest first.
    let (mut rest, mut millis) = (text, 0u128);
    for (unit, ms) in DURATION_UNITS {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let tail = &rest[digits..];
        // `5ms` is never five minutes and a stray `s`.
        if digits > 0 && tail.starts_with(unit) && !(unit == "m" && tail.starts_with("ms")) {
            let amount: u128 = rest[..digits]
                .parse()
                .map_err(|_| "duration out of range")?;
            millis = millis.saturating_add(amount.saturating_mul(ms));
            rest = &tail[unit.len()..];
        }
    }
    if !rest.is_empty() {
        return Err(format!("not a valid duration string: {text:?}"));
    }
    // Go keeps a duration as int64 nanoseconds (about 292 years).
    if millis.saturating_mul(1_000_000) > i64::MAX as u128 {
        return Err(format!("duration out of range: {text:?}"));
    }
    Ok(Duration::from_millis(millis as u64))
}

/// model.Duration reads any scalar as text, so `eval_time: 0` works; null means unset.
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) => parse_prometheus_duration(&s).map_err(serde::de::Error::custom),
        None => Ok(Duration::ZERO),
    }
}

/// yaml.v2 leaves a blank field (`exp_alerts:`) at its zero value; serde would reject it.
fn de_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A whole test file. [`parse_test_file`] applies promtool's default: evaluation_interval 1m
/// when missing or zero.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// As written: promtool joins relative paths to the test file's folder and globs them.
    #[serde(default, deserialize_with = "de_or_default")]
    pub rule_files: Vec<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub evaluation_interval: Duration,
    #[serde(default, deserialize_with = "de_or_default")]
    pub group_eval_order: Vec<String>,
    #[serde(default, deserialize_with = "de_or_default")]
    pub tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    /// The step between input values. promtool 2.42 does not default it: missing (or `0`), it
    /// puts every value at 0 s, where only the first one present is kept.
    #[serde(default, deserialize_with = "de_duration")]
    pub interval: Duration,
    #[serde(default, deserialize_with = "de_or_default")]
    pub input_series: Vec<InputSeries>,
    #[serde(default, deserialize_with = "de_or_default")]
    pub alert_rule_test: Vec<AlertRuleTest>,
    #[serde(default, deserialize_with = "de_or_default")]
    pub promql_expr_test: Vec<PromqlExprTest>,
    #[serde(default, deserialize_with = "de_or_default")]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub external_url: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    pub series: String,
    /// Missing values make a series without samples, as in promtool.
    #[serde(default)]
    pub values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleTest {
    #[serde(default, deserialize_with = "de_duration")]
    pub eval_time: Duration,
    pub alertname: String,
    /// Empty means "this alert must not be firing".
    #[serde(default, deserialize_with = "de_or_default")]
    pub exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpAlert {
    #[serde(default, deserialize_with = "de_or_default")]
    pub exp_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de_or_default")]
    pub exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlExprTest {
    pub expr: String,
    #[serde(default, deserialize_with = "de_duration")]
    pub eval_time: Duration,
    #[serde(default, deserialize_with = "de_or_default")]
    pub exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpSample {
    /// Series notation; empty or `{}` is the empty label set.
    #[serde(default)]
    pub labels: String,
    /// Read as promtool's YAML library reads a float (see [`yaml_float`]).
    #[serde(default, deserialize_with = "de_yaml_float")]
    pub value: f64,
}

fn de_yaml_float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(text) => yaml_float(&text).map_err(serde::de::Error::custom),
        None => Ok(0.0),
    }
}

/// A YAML scalar as gopkg.in/yaml.v2 resolves it into a float64 (what promtool compares
/// results with): `_` are dropped; an integer is read by Go's `ParseInt(s, 0, 64)`, so `010`
/// is octal 8 and `0x10` is 16; then a decimal float; `.inf`, `-.inf` and `.nan` in YAML's
/// spellings. `NaN`, `Inf` and booleans are strings to yaml.v2, and an error.
pub fn yaml_float(text: &str) -> Result<f64, String> {
    let fail = || format!("cannot read {text:?} as a float (as promtool's YAML reader)");
    let special = match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => None,
    };
    if let Some(v) = special {
        return Ok(v);
    }
    if text.starts_with('.') {
        return text.parse::<f64>().map_err(|_| fail());
    }
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') {
        return Err(fail());
    }
    let plain = text.replace('_', "");
    if let Some(v) = go_parse_int(&plain) {
        return Ok(v);
    }
    let body = plain.strip_prefix(['+', '-']).unwrap_or(&plain);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    if mantissa_ok && exponent_ok {
        return plain.parse::<f64>().map_err(|_| fail());
    }
    Err(fail())
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint` as yaml.v2 does, as a float.
fn go_parse_int(s: &str) -> Option<f64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    match negative {
        true if magnitude <= 1 << 63 => Some(-(magnitude as f64)),
        false if magnitude <= u128::from(u64::MAX) => Some(magnitude as f64),
        _ => None,
    }
}

/// Parses a test file, applies the default evaluation interval, and checks every series, values and
/// labels string up front so that a typo is reported at load time, with where it is.
pub fn parse_test_file(text: &str) -> Result<TestFile, String> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut file: TestFile = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let msg = e.without_snippet().to_string();
        match e.location() {
            Some(l) if !msg.contains("line") => {
                format!("{msg} at line {}:{}", l.line(), l.column())
            }
            _ => msg,
        }
    })?;
    if file.evaluation_interval.is_zero() {
        file.evaluation_interval = Duration::from_secs(60);
    }
    for (n, name) in file.group_eval_order.iter().enumerate() {
        if file.group_eval_order[..n].contains(name) {
            return Err(format!("group name repeated in evaluation order: {name}"));
        }
    }
    for (g, group) in file.tests.iter().enumerate() {
        for (k, s) in group.input_series.iter().enumerate() {
            let at = format!("tests[{g}].input_series[{k}]");
            parse_series(&s.series).map_err(|e| format!("{at}.series: {e}"))?;
            expand_values(&s.values).map_err(|e| format!("{at}.values: {e}"))?;
        }
        if let Some(k) = group
            .alert_rule_test
            .iter()
            .position(|t| t.alertname.is_empty())
        {
            return Err(format!(
                "tests[{g}].alert_rule_test[{k}]: alertname is empty"
            ));
        }
        for (k, t) in group.promql_expr_test.iter().enumerate() {
            for (j, s) in t.exp_samples.iter().enumerate() {
                parse_series(&s.labels).map_err(|e| {
                    format!("tests[{g}].promql_expr_test[{k}].exp_samples[{j}].labels: {e}")
                })?;
            }
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table rows are `input => expected`, one a line; blank lines are skipped.
    fn rows(table: &str) -> impl Iterator<Item = (&str, &str)> {
        table.lines().filter(|l| !l.trim().is_empty()).map(|l| {
            let (a, b) = l.split_once("=>").unwrap_or((l, ""));
            (a.trim(), b.trim())
        })
    }

    /// Renders an expansion as promtool's docs write it: `1 _ stale NaN`.
    fn show(values: &[Option<SeriesValue>]) -> String {
        let one = |v: &Option<SeriesValue>| match v {
            None => "_".to_string(),
            Some(SeriesValue::Stale) => "stale".to_string(),
            Some(SeriesValue::Value(f)) => f.to_string(),
        };
        values.iter().map(one).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn values_notation_expands_like_promtool() {
        let table = "
            1 2 3               => 1 2 3
            -2+4x3              => -2 2 6 10
            1-2x4               => 1 -1 -3 -5 -7
            1x4                 => 1 1 1 1 1
            1x0                 => 1
            1 _x3 stale         => 1 _ _ _ stale
            _ _x1 _x0           => _ _
            -1-1x2 +3           => -1 -2 -3 3
            1e3 -1.5 .5 5. 2E-1 => 1000 -1.5 0.5 5 0.2
            Inf -Inf +inf NaN   => inf -inf inf NaN
            Inf-1x1             => inf inf
            010 08 -010 0 00    => 8 8 -8 0 0
            1+010x1             => 1 9
            1e-2x2              => 0.01 0.01 0.01
            0x2                 => 0 0 0
            -0x1                => -0 -0
            0.1+0.1x2           => 0.1 0.2 0.30000000000000004
            stale+1x2           => stale NaN NaN
            1x03                => 1 1 1 1";
        for (text, want) in rows(table).chain([("", ""), ("  1\t2\n3 \r\n", "1 2 3")]) {
            assert_eq!(
                expand_values(text).map(|v| show(&v)).as_deref(),
                Ok(want),
                "{text:?}"
            );
        }
        assert_eq!(expand_values("stale"), Ok(vec![Some(SeriesValue::Stale)]));
        let bad = "1+2 | 1x | x3 | 1x-2 | 1x2.5 | 1x1e2 | 1xx2 | stalex3 | Infx2 | Stale | foo | -stale
            | -_ | +-1 | --1 | 1 + 2x3 | 1a | 1_000 | 1.2.3 | 1e | 1e400 | _1 | __ | _+1x2 | 1+stalex2
            | 1+Infx2 | 1,2 | {{schema:1}} | 1x99999999999 | é";
        for text in bad.split('|').map(str::trim) {
            assert!(expand_values(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn series_notation_gives_labels() {
        let table = r#"
            up                              => __name__=up
            up{job="a", instance="h:9090"}  => __name__=up,instance=h:9090,job=a
            {__name__="m", a="b"}           => __name__=m,a=b
            ns:rate5m { a = 'x' , }         => __name__=ns:rate5m,a=x
            m{a=`x\y"`}                     => __name__=m,a=x\y"
            m{a="", b="c"}                  => __name__=m,b=c
            m{__name__="x"}                 => __name__=m
            sum{by="on"}                    => __name__=sum,by=on
            m{a='it\'s', b="\x41\101\u00e9\xc3\xa9\U0001F600"} => __name__=m,a=it's,b=AAéé😀
            m{}                             => __name__=m
            {}                              =>"#;
        let show = |l: BTreeMap<String, String>| {
            l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        for (text, want) in rows(table).chain([("", "")]) {
            assert_eq!(
                parse_series(text).map(show).as_deref(),
                Ok(want),
                "{text:?}"
            );
        }
        let escaped = parse_series(r#"m{a="q\"\\\n\t\a"}"#).map(|l| l["a"].clone());
        assert_eq!(escaped.as_deref(), Ok("q\"\\\n\t\x07"));
        let bad = r#"m{a="b" | m{a=b} | m{a="b" c="d"} | m{1a="b"} | m{a="b"} x | m{a="b\q"}
            | m{a="b", a="c"} | on{a="b"} | Inf | m{a="\xff"} | m{a.b="c"} | m{a='b"} | m{a="\'"}
            | m{ | m{,} | m{a="\400"} | m{a="\ud800"} | 1m | m{a=~"b"} | m n | m{a="b
            c"}"#;
        for text in bad.split(" | ").map(str::trim) {
            assert!(parse_series(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn prometheus_durations() {
        let table = "0 => 0 | 0s => 0 | 100ms => 100 | 1m => 60000 | 5m30s => 330000 | 1h30m => 5400000
            | 2d => 172800000 | 1w => 604800000 | 1y => 31536000000 | 1y2w3d4h5m6s7ms => 33019506007";
        for (text, ms) in table.split('|').filter_map(|r| r.split_once("=>")) {
            let want = Duration::from_millis(ms.trim().parse().unwrap());
            assert_eq!(parse_prometheus_duration(text.trim()), Ok(want), "{text}");
        }
        for text in [
            "", "5", "00", "1.5h", "-1m", "30m1h", "1m1m", "1M", "1 m", "m", "1us", "300y",
        ] {
            assert!(
                parse_prometheus_duration(text).is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn expected_values_read_as_yaml_v2_reads_them() {
        let table = "1 => 1 | -2.5 => -2.5 | 1e3 => 1000 | 1.5e-3 => 0.0015 | .5 => 0.5 | 5. => 5
            | +.5 => 0.5 | 010 => 8 | 0x10 => 16 | 0o17 => 15 | 0b101 => 5 | -010 => -8 | 1_000 => 1000
            | .inf => inf | -.Inf => -inf | +.INF => inf | 9223372036854775808 => 9223372036854775808";
        for (text, want) in table.split('|').filter_map(|r| r.split_once("=>")) {
            let want: f64 = want.trim().parse().unwrap();
            assert_eq!(yaml_float(text.trim()), Ok(want), "{text}");
        }
        assert!(yaml_float(".NaN").unwrap().is_nan());
        for text in [
            "NaN", "Inf", "true", "1e", "0x", "1.2.3", "abc", "1 2", ".Nan",
        ] {
            assert!(yaml_float(text).is_err(), "{text:?} was accepted");
        }
        let file = parse_test_file(
            "tests: [{promql_expr_test: [{expr: x, exp_samples: [{value: 010}, {value: 1e3}, {}]}]}]",
        )
        .unwrap();
        let values: Vec<f64> = file.tests[0].promql_expr_test[0]
            .exp_samples
            .iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(values, [8.0, 1000.0, 0.0]);
    }

    const EXAMPLE: &str = r#"
rule_files:
  - alerts.yml
group_eval_order: [example, other]
tests:
  - interval: 30s
    name: instance down
    external_labels: {cluster: eu1}
    external_url: https://prom.example
    input_series:
      - series: 'up{job="prometheus", instance="localhost:9090"}'
        values: '0 0 0 0 0 0 0 0 0 0 0'
      - series: 'go_goroutines{job="node"}'
        values: 10+10x2 30+20x5
    alert_rule_test:
      - eval_time: 10m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {severity: page, instance: "localhost:9090", job: prometheus}
            exp_annotations:
              summary: "Instance localhost:9090 down"
      - eval_time: 0
        alertname: InstanceDown
        exp_alerts:
    promql_expr_test:
      - expr: go_goroutines > 5
        eval_time: 4m
        exp_samples:
          - labels: 'go_goroutines{job="node"}'
            value: 50
          - labels: '{}'
            value: 1e3
  - input_series: []
"#;

    #[test]
    fn realistic_file_parses_with_defaults_applied() {
        let file = parse_test_file(EXAMPLE).unwrap();
        assert_eq!(
            (file.rule_files, file.group_eval_order),
            (
                vec!["alerts.yml".into()],
                vec!["example".into(), "other".into()]
            )
        );
        assert_eq!(file.evaluation_interval, Duration::from_secs(60));
        let (first, second) = (&file.tests[0], &file.tests[1]);
        assert_eq!(
            (first.interval, second.interval),
            (Duration::from_secs(30), Duration::ZERO)
        );
        assert_eq!(
            (first.name.as_deref(), first.external_url.as_str()),
            (Some("instance down"), "https://prom.example")
        );
        assert_eq!(first.external_labels["cluster"], "eu1");
        let values = expand_values(&first.input_series[1].values).map(|v| show(&v));
        assert_eq!(values.as_deref(), Ok("10 20 30 30 50 70 90 110 130"));
        let (alert, silent) = (&first.alert_rule_test[0], &first.alert_rule_test[1]);
        assert_eq!(
            (alert.eval_time, alert.alertname.as_str()),
            (Duration::from_secs(600), "InstanceDown")
        );
        assert_eq!(alert.exp_alerts[0].exp_labels["instance"], "localhost:9090");
        assert_eq!(
            alert.exp_alerts[0].exp_annotations["summary"],
            "Instance localhost:9090 down"
        );
        assert_eq!(
            (silent.eval_time, silent.exp_alerts.len()),
            (Duration::ZERO, 0)
        );
        let expr = &first.promql_expr_test[0];
        assert_eq!(
            (expr.expr.as_str(), expr.eval_time),
            ("go_goroutines > 5", Duration::from_secs(240))
        );
        assert_eq!(
            (expr.exp_samples[0].value, expr.exp_samples[1].value),
            (50.0, 1000.0)
        );
        let explicit =
            parse_test_file("evaluation_interval: 15s\ntests: [{}, {interval: 0}]").unwrap();
        let intervals: Vec<_> = explicit.tests.iter().map(|g| g.interval).collect();
        assert_eq!(intervals, [Duration::ZERO; 2]);
        assert!(parse_test_file("").unwrap().tests.is_empty());
    }

    #[test]
    fn bad_files_are_rejected_with_where() {
        let table = r#"
            evaluation_intervall: 1m                                   => line 1
            tests: [{interval: 1m,\n  alert_rule_tests: []}]            => line 2
            tests:\n- input_series:\n  - {series: up, value: '1'}      => line 3
            evaluation_interval: 1.5m                                  => line 1
            tests: [{promql_expr_test: [{eval_time: 1m}]}]             => expr
            tests: [{input_series: [{series: up, values: '1+1'}]}]     => tests[0].input_series[0].values
            tests: [{input_series: [{series: 'up{', values: '1'}]}]    => tests[0].input_series[0].series
            tests: [{promql_expr_test: [{expr: up, exp_samples: [{labels: 'a b'}]}]}] => exp_samples[0].labels
            tests: [{alert_rule_test: [{alertname: ''}]}]              => alertname is empty
            group_eval_order: [a, b, a]                                => repeated"#;
        for (text, want) in rows(table) {
            let err = parse_test_file(&text.replace("\\n", "\n")).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
