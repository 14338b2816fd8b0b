//! Turns one YAML document and a serde type into *every* problem in the document, not just the
//! first, each with its line, column and field path.
//!
//! serde stops at the first error. To report them all we keep the typed structs as the single
//! declaration of the format and run the deserializer again after blanking the entry that failed
//! (the lines are kept, so later errors keep their true line numbers). A `missing field` that
//! only appears because we blanked that field is a consequence, not a mistake of the author, and
//! is dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One problem in an input file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, or what stood for one (`--target`).
    pub origin: PathBuf,
    /// 1-based; 0 when the problem has no single line (a missing environment variable).
    pub line: u64,
    pub column: u64,
    /// Dotted path of the field: `targets[1].url`.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    /// A problem at the place in `origin` where `at` was written.
    pub fn at<T>(
        origin: &Path,
        at: &serde_saphyr::Spanned<T>,
        field: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            origin: origin.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A problem with the environment variable `name`.
    pub fn environment(name: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            origin: "(environment)".into(),
            line: 0,
            column: 0,
            field: name.to_string(),
            message: message.into(),
        }
    }
}

/// The text of an input file, or the one problem that it cannot be read.
pub fn read_file(path: &Path) -> Result<String, Diagnostics> {
    std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            origin: path.to_path_buf(),
            line: 0,
            column: 0,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }])
    })
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin.display();
        match self.line {
            0 => write!(f, "{origin}: {}: {}", self.field, self.message),
            line => write!(
                f,
                "{origin}:{line}:{}: {}: {}",
                self.column, self.field, self.message
            ),
        }
    }
}

/// Every problem found in one input; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// At most this many passes; a document with more mistakes gets the first ones.
const MAX_PASSES: usize = 32;

/// Deserializes `text` into `T`, collecting every error serde can find. On success the value is
/// returned together with the errors of blanked entries (so the caller can still run semantic
/// checks on what is left and report everything at once).
pub fn deserialize_all<T: DeserializeOwned>(
    origin: &Path,
    text: &str,
) -> (Option<T>, Vec<Diagnostic>) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut blanked: Vec<(usize, usize, String)> = Vec::new(); // (line, column, key)
    for _ in 0..MAX_PASSES {
        let current = lines.join("\n");
        let options = serde_saphyr::options! { with_snippet: false };
        let error = match serde_saphyr::from_str_with_options::<T>(&current, options) {
            Ok(value) => return (Some(value), found),
            Err(error) => error,
        };
        let message = strip_location(&error.without_snippet().to_string());
        let Some(location) = error.location().filter(|l| l.line() > 0) else {
            found.push(Diagnostic {
                origin: origin.to_path_buf(),
                line: 0,
                column: 0,
                field: "(document)".into(),
                message,
            });
            return (None, found);
        };
        let (line, column) = (location.line() as usize, location.column() as usize);
        if found
            .iter()
            .any(|d| (d.line, d.column) == (line as u64, column as u64))
        {
            // No progress (a syntax error reported again): what we have is all we can tell.
            return (None, found);
        }
        let missing = missing_field(&message);
        let consequence = missing.as_deref().is_some_and(|field| {
            let start = mapping_start(&lines, line, column.saturating_sub(1));
            blanked
                .iter()
                .any(|(l, c, key)| key == field && *c == column && (start..=line).contains(l))
        });
        if !consequence {
            found.push(Diagnostic {
                origin: origin.to_path_buf(),
                line: line as u64,
                column: column as u64,
                field: field_path(&lines, line, column, missing.as_deref()),
                message,
            });
        }
        let progressed = if missing.is_some() {
            blank_enclosing(&mut lines, line, column)
        } else {
            blank_entry(&mut lines, line, column, &mut blanked)
        };
        if !progressed {
            return (None, found);
        }
    }
    (None, found)
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Column (0-based, bytes) where the key of the entry on `line` starts: after any `- `.
fn key_column(line: &str) -> usize {
    let mut col = indent_of(line);
    while line[col..].starts_with("- ") {
        col += 2;
        col += indent_of(&line[col..]);
    }
    col
}

fn key_at(line: &str, col: usize) -> Option<&str> {
    let rest = line.get(col..)?;
    let end = rest.find(':')?;
    let key = rest[..end].trim().trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty() && !key.contains(' ')).then_some(key)
}

/// Blanks the `key: value` entry on 1-based `line` and the more-indented lines below it.
fn blank_entry(
    lines: &mut [String],
    line: usize,
    _column: usize,
    blanked: &mut Vec<(usize, usize, String)>,
) -> bool {
    let Some(first) = lines.get(line - 1) else {
        return false;
    };
    let col = key_column(first);
    if col >= first.len() {
        return false;
    }
    if let Some(key) = key_at(first, col) {
        blanked.push((line, col + 1, key.to_string()));
    }
    lines[line - 1].truncate(col);
    blank_children(lines, line, col);
    true
}

fn blank_children(lines: &mut [String], line: usize, col: usize) {
    for next in lines.iter_mut().skip(line) {
        if is_blank_or_comment(next) {
            continue;
        }
        if indent_of(next) <= col {
            break;
        }
        next.clear();
    }
}

/// After a missing field in the mapping that starts at (`line`, `column`): blank the sequence
/// item or parent entry holding that mapping, so the next pass can go on.
fn blank_enclosing(lines: &mut [String], line: usize, column: usize) -> bool {
    let Some(first) = lines.get(line - 1) else {
        return false;
    };
    let col = column.saturating_sub(1);
    // A sequence item: `- ` right before the mapping's first key.
    if col >= 2 && first.get(col - 2..col) == Some("- ") {
        let dash = col - 2;
        lines[line - 1].truncate(dash);
        blank_children(lines, line, dash);
        return true;
    }
    // A nested mapping: its parent key sits on an earlier, less indented line.
    for parent in (0..line - 1).rev() {
        let text = &lines[parent];
        if is_blank_or_comment(text) {
            continue;
        }
        if key_column(text) < col {
            let pcol = key_column(text);
            lines[parent].truncate(pcol);
            blank_children(lines, parent + 1, pcol);
            return true;
        }
    }
    false
}

/// The 1-based line where the mapping holding the key at (`line`, 0-based `col`) begins.
fn mapping_start(lines: &[String], line: usize, col: usize) -> usize {
    let mut start = line;
    for row in (0..line).rev() {
        let text = &lines[row];
        if dash_before(text, col).is_some() {
            return row + 1;
        }
        if is_blank_or_comment(text) || indent_of(text) > col {
            continue;
        }
        if key_column(text) != col {
            break;
        }
        start = row + 1;
    }
    start
}

/// `targets[1].url`: the keys and sequence indexes from the document root to the entry.
fn field_path(lines: &[String], line: usize, column: usize, missing: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new(); // innermost first
    let mut row = line - 1;
    let Some(text) = lines.get(row) else {
        return "(document)".into();
    };
    let mut col = match missing {
        Some(field) => {
            parts.push(field.to_string());
            column.saturating_sub(1)
        }
        None => {
            let col = key_column(text);
            parts.extend(key_at(text, col).map(str::to_string));
            col
        }
    };
    loop {
        if let Some(dash) = dash_before(&lines[row], col) {
            let (index, parent) = item_index(lines, row, dash);
            parts.push(format!("[{index}]"));
            let Some(parent) = parent else { break };
            row = parent;
            col = key_column(&lines[row]);
            parts.extend(key_at(&lines[row], col).map(str::to_string));
            continue;
        }
        let Some(above) = (0..row)
            .rev()
            .find(|&r| !is_blank_or_comment(&lines[r]) && indent_of(&lines[r]) < col)
        else {
            break;
        };
        row = above;
        let above_col = key_column(&lines[row]);
        // A line like `- name: a` whose key lines up with ours is a sibling in the same
        // sequence item: the next turn of the loop counts the item.
        if above_col != col {
            col = above_col;
            parts.extend(key_at(&lines[row], col).map(str::to_string));
        }
    }
    parts.reverse();
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(&part);
    }
    if out.is_empty() {
        "(document)".into()
    } else {
        out
    }
}

/// The column of the `-` that opens the sequence item whose first key is at `col`, if any.
fn dash_before(line: &str, col: usize) -> Option<usize> {
    let prefix = line.get(..col)?;
    let only_dashes = prefix.chars().all(|c| c == ' ' || c == '-');
    prefix.trim_end().ends_with('-').then_some(())?;
    only_dashes.then(|| prefix.rfind('-').unwrap_or(0))
}

/// The index of the sequence item starting on `row` (its `-` at `dash`), and the row of the key
/// that holds the sequence.
fn item_index(lines: &[String], row: usize, dash: usize) -> (usize, Option<usize>) {
    let mut index = 0;
    for r in (0..row).rev() {
        let above = &lines[r];
        if is_blank_or_comment(above) {
            continue;
        }
        let indent = indent_of(above);
        if indent == dash && above[indent..].starts_with('-') {
            index += 1;
        } else if indent <= dash {
            return (index, Some(r));
        }
    }
    (index, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        interval: Option<u32>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        port: Option<u16>,
    }

    fn run(text: &str) -> (Option<Doc>, Vec<String>) {
        let (doc, diags) = deserialize_all::<Doc>(Path::new("c.yaml"), text);
        (doc, diags.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_mistake_is_reported_with_its_line_and_field() {
        let text = "interval: soon\nitems:\n  - name: a\n    port: 99999\n  - name: b\n    colour: red\nextra: 1\n";
        let (doc, errors) = run(text);
        assert_eq!(
            errors,
            vec![
                "c.yaml:1:11: interval: invalid u32",
                "c.yaml:4:11: items[0].port: invalid u16",
                "c.yaml:6:5: items[1].colour: unknown field `colour`, expected one of name, port",
                "c.yaml:7:1: extra: unknown field `extra`, expected one of interval, items",
            ]
        );
        // What is left after blanking the mistakes still deserializes.
        assert_eq!(doc.map(|d| d.items.len()), Some(2));
    }

    #[test]
    fn a_truly_missing_field_is_reported_and_its_item_dropped() {
        let (doc, errors) = run("items:\n  - port: 1\n  - name: ok\n");
        assert_eq!(
            errors,
            vec!["c.yaml:2:5: items[0].name: missing field `name`"]
        );
        assert_eq!(doc.map(|d| d.items.len()), Some(1));
    }

    #[test]
    fn blanking_a_required_field_does_not_report_it_missing() {
        let (_, errors) = run("items:\n  - name: [1, 2]\n    port: 5\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("c.yaml:2:"), "{errors:?}");
    }

    #[test]
    fn a_clean_document_has_no_diagnostics() {
        let (doc, errors) = run("interval: 3\nitems:\n  - name: a\n");
        assert!(errors.is_empty());
        assert_eq!(doc.and_then(|d| d.interval), Some(3));
    }

    #[test]
    fn broken_syntax_is_one_error_not_a_panic() {
        let (doc, errors) = run("items: [\n  - name: a\n");
        assert!(doc.is_none());
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
