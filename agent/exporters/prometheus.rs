//! The Prometheus text exposition (format 0.0.4) of the exported samples, written straight from
//! the exposition model: families in catalogue order, series in the order of the model (targets
//! as configured, pools by name), so output is stable and can be diffed. The agent's own
//! telemetry, recorded through the `metrics` facade, is appended by [`crate::telemetry`].

use crate::exposition::{CATALOGUE, ExportedSample, Exposer, Family, Read, of_family};
use crate::status::{Published, Snapshot};

/// The content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes every family of the model that has samples: `model` (catalogue order, as
/// [`Exposer::samples`] makes it) and `alerts` (the `poolwatch_alerts` samples).
pub fn encode(model: &[ExportedSample], alerts: &[ExportedSample], out: &mut Vec<u8>) {
    for family in CATALOGUE {
        let samples = match family.read {
            Read::Agent => continue,
            Read::Alerts => alerts,
            _ => of_family(model, family),
        };
        if samples.is_empty() {
            continue;
        }
        write_header(family, out);
        for sample in samples {
            write_sample(sample, out);
        }
    }
}

/// The exposition of a publish: rendered by the first caller, then shared. Its buffer gets an
/// eighth more than the last rendered exposition's length, as it is kept whole with its unused
/// room.
pub fn exposition(published: &Published) -> &bytes::Bytes {
    published.metrics.get_or_init(|| {
        let hint = published.metrics_hint;
        let mut out = Vec::with_capacity(hint + hint / 8);
        encode(&published.samples, &published.alert_samples, &mut out);
        out.into()
    })
}

/// Renders a snapshot on its own (no alerts, no self-telemetry): for `check`, tests and benches.
pub fn render(snapshot: &Snapshot) -> String {
    let mut samples = Vec::new();
    Exposer::default().samples(snapshot, &mut samples);
    let mut out = Vec::new();
    encode(&samples, &[], &mut out);
    String::from_utf8(out).expect("the exposition is UTF-8")
}

fn write_header(family: &Family, out: &mut Vec<u8>) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(family.name.as_bytes());
    out.push(b' ');
    for b in family.help.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(family.name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(family.instrument.prometheus_type().as_bytes());
    out.push(b'\n');
}

fn write_sample(sample: &ExportedSample, out: &mut Vec<u8>) {
    sample.scalars(|scalar| {
        out.extend_from_slice(sample.family.name.as_bytes());
        out.extend_from_slice(scalar.suffix.as_bytes());
        write_labels(sample, scalar.le, out);
        out.push(b' ');
        write_value(scalar.value, out);
        out.push(b'\n');
    });
}

/// The sample's labels with its extra label where it sorts, and a bucket's `le` last (where
/// client libraries put it).
fn write_labels(sample: &ExportedSample, le: Option<&str>, out: &mut Vec<u8>) {
    let rendered = sample.labels.rendered();
    if rendered.is_empty() && sample.extra.is_none() && le.is_none() {
        return;
    }
    out.push(b'{');
    let mut any = false;
    match sample.extra {
        None => {
            out.extend_from_slice(rendered.as_bytes());
            any = !rendered.is_empty();
        }
        Some((name, value)) => {
            let mut placed = false;
            for (k, v) in sample.labels.pairs() {
                if !placed && name < k {
                    write_pair(name, value, any, out);
                    placed = true;
                    any = true;
                }
                write_pair(k, v, any, out);
                any = true;
            }
            if !placed {
                write_pair(name, value, any, out);
                any = true;
            }
        }
    }
    if let Some(le) = le {
        write_pair("le", le, any, out);
    }
    out.push(b'}');
}

fn write_pair(name: &str, value: &str, comma: bool, out: &mut Vec<u8>) {
    if comma {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
    out.push(b'"');
}

/// Integers as integers, other values in their shortest round-trip form, and Prometheus'
/// spellings of the non-finite ones.
pub fn write_value(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests;
