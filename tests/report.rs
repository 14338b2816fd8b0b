//! The HTML report of `analyze-benchmarks`, from real benchmark reports, rendered by headless
//! Chromium: the page is not blank and every chart shows both its series.

use std::path::Path;
use std::process::Command;

use poolwatch::bench::html::{MEASURED_COLOR, PREDICTED_COLOR};

use crate::common::benchmark::benchmark;
use crate::common::binary;

/// The Debian package's browser; scripts/services.sh installs it.
fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser"] {
        if Command::new(candidate).arg("--version").output().is_ok() {
            return candidate;
        }
    }
    panic!("Chromium is not installed: run `scripts/services.sh start` (it installs `chromium`)");
}

/// Headless Chromium, isolated: a fresh profile, no network of its own, no GPU.
fn screenshot(html: &Path, png: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// RGB pixels of a PNG, row by row.
fn pixels(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(info.bit_depth == png::BitDepth::Eight && channels >= 3);
    let rgb = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 6)
}

#[test]
fn the_report_renders_with_its_charts_visible() {
    let _load = crate::common::exclusive_load();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let reports = benchmark(
        &runs,
        &[
            "--backend",
            "sqlite",
            "--operation",
            "read",
            "--rows",
            "1000",
            "--pool-size",
            "2,3,4",
            "--arrival-rate",
            "300",
            "--hold-time-ms",
            "5",
            "--concurrent-users",
            "16",
            "--duration",
            "1.5",
        ],
        &[],
    );
    assert_eq!(reports.len(), 3);
    let html = dir.path().join("report.html");
    let out = Command::new(binary())
        .arg("analyze-benchmarks")
        .args(["2", "3", "4"].map(|s| runs.join(format!("pool_test_{s}.json"))))
        .arg("--output")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a request).
    for fetch in ["src=", "href=", "url(", "@import", "<script", "<link"] {
        assert!(!text.contains(fetch), "the report fetches: {fetch}");
    }
    assert_eq!(text.matches("<svg").count(), 4);
    assert!(text.contains("id=\"recommendation\""));
    assert!(text.contains("model: <code>erlang_c</code>"));
    assert!(text.contains("Erlang C (M/M/c): "));
    for size in [2, 3, 4] {
        assert!(text.contains(&format!("pool_test_{size}.json")));
    }

    let png = dir.path().join("report.png");
    let (width, height) = (1280, 1400);
    screenshot(&html, &png, width, height);
    let (w, h, pixels) = pixels(&png);
    assert_eq!((w, h), (width, height));
    // Not blank: the luminance varies.
    let luminance: Vec<f64> = pixels
        .iter()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = luminance.iter().sum::<f64>() / luminance.len() as f64;
    let variance =
        luminance.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luminance.len() as f64;
    assert!(
        variance > 100.0,
        "the screenshot is blank: variance {variance:.1}"
    );
    // The charts are drawn: both series' colours cover real areas in both columns of charts
    // (two 560 px charts per row). A legend swatch is 144 px; lines and markers make the rest.
    // The predicted line is drawn over the measured one and hides it where they agree: a run
    // whose measurement matched well showed 1,361 px of the measured colour in one column.
    let (measured, predicted) = (rgb(MEASURED_COLOR), rgb(PREDICTED_COLOR));
    let count = |colour: [u8; 3], x0: u32, x1: u32| {
        (0..h)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|(x, y)| near(pixels[(y * w + x) as usize], colour))
            .count()
    };
    for (x0, x1) in [(0, w / 2), (w / 2, w)] {
        let m = count(measured, x0, x1);
        let p = count(predicted, x0, x1);
        assert!(
            m > 1000,
            "measured series barely visible in columns {x0}..{x1}: {m} px"
        );
        assert!(
            p > 800,
            "predicted series barely visible in columns {x0}..{x1}: {p} px"
        );
    }
}
