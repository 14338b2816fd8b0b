//! Rows read by column name, and declarative column tables: a column known by several names
//! across versions is listed once with its aliases, its unit converted to the base unit here;
//! unknown columns are ignored, missing ones are absent.

use std::ops::Range;

use rustc_hash::FxHashMap;
use tokio_postgres::{SimpleQueryMessage, SimpleQueryRow};

/// The rows of one simple-protocol query, as text, with columns found by name through one index.
/// Rows read from the wire keep the server's message, each value decoded only when it is read:
/// a source reads a few of the columns a `SHOW` answers with.
#[derive(Debug, Default)]
pub struct Rows {
    /// Values a row: one a column.
    width: usize,
    /// Column name → position (the first, should two share a name).
    index: FxHashMap<String, usize>,
    stored: Stored,
}

#[derive(Debug, Default)]
enum Stored {
    /// As the server sent them.
    Wire(Vec<SimpleQueryRow>),
    /// Given literally (tests feed the shapes of other versions): every value's text one after
    /// another, and row after row one cell a column (`None` for NULL).
    Text {
        text: String,
        cells: Vec<Option<Range<usize>>>,
    },
    #[default]
    Empty,
}

impl Rows {
    /// Builds rows from literal columns and values: tests feed the shapes of other versions.
    pub fn new(columns: &[&str], rows: &[&[&str]]) -> Rows {
        let mut out = Rows::default();
        out.set_columns(columns.iter().copied());
        let (mut text, mut cells) = (String::new(), Vec::new());
        for row in rows {
            let before = cells.len();
            for value in row.iter().take(out.width) {
                let start = text.len();
                text.push_str(value);
                cells.push(Some(start..text.len()));
            }
            // Values past the columns are dropped and missing ones are NULL.
            cells.resize(before + out.width, None);
        }
        out.stored = Stored::Text { text, cells };
        out
    }

    /// Collects the first result set of a simple query.
    pub fn from_messages(messages: Vec<SimpleQueryMessage>) -> Rows {
        let mut out = Rows::default();
        let mut rows = Vec::new();
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) if out.width == 0 => {
                    out.set_columns(columns.iter().map(|c| c.name()));
                }
                SimpleQueryMessage::Row(row) => {
                    if out.width == 0 {
                        out.set_columns(row.columns().iter().map(|c| c.name()));
                    }
                    rows.push(row);
                }
                _ => {}
            }
        }
        out.stored = Stored::Wire(rows);
        out
    }

    fn set_columns<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        self.index.clear();
        self.width = 0;
        for name in names {
            self.index.entry(name.to_string()).or_insert(self.width);
            self.width += 1;
        }
    }

    fn len(&self) -> usize {
        match &self.stored {
            Stored::Wire(rows) => rows.len(),
            Stored::Text { cells, .. } => cells.len() / self.width.max(1),
            Stored::Empty => 0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.len()).map(|at| Row { rows: self, at })
    }

    /// The value in column `i` of row `at`; `None` if NULL, or not text.
    fn value(&self, at: usize, i: usize) -> Option<&str> {
        match &self.stored {
            // A value that is not UTF-8 is as good as absent.
            Stored::Wire(rows) => rows.get(at)?.try_get(i).ok().flatten(),
            Stored::Text { text, cells } => {
                let cell = cells.get(at * self.width + i)?.clone()?;
                text.get(cell)
            }
            Stored::Empty => None,
        }
    }
}

/// One row; values by column name.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    rows: &'a Rows,
    at: usize,
}

impl<'a> Row<'a> {
    /// The text of the first of `names` this row has; `None` if absent or NULL.
    pub fn text(&self, names: &[&str]) -> Option<&'a str> {
        names.iter().find_map(|name| {
            let i = *self.rows.index.get(*name)?;
            self.rows.value(self.at, i)
        })
    }

    /// Reads every column of `table` this row has, converted to base units.
    pub fn read(&self, table: &[Column]) -> Values {
        let mut values = Vec::with_capacity(table.len());
        for column in table {
            let parsed = self
                .text(column.names)
                .and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite());
            if let Some(v) = parsed {
                values.push((column.names[0], v * column.unit.scale()));
            }
        }
        Values(values)
    }
}

/// Units of a column as the target reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Microseconds,
}

impl Unit {
    /// Factor to the base unit (seconds for time).
    fn scale(self) -> f64 {
        match self {
            Unit::Count | Unit::Seconds => 1.0,
            Unit::Microseconds => 1e-6,
        }
    }
}

/// A column of a table: its current name first, then older names.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub names: &'static [&'static str],
    pub unit: Unit,
}

/// Shorthand for a table entry.
pub const fn column(names: &'static [&'static str], unit: Unit) -> Column {
    Column { names, unit }
}

/// Values read from a row, keyed by the column's current name: a table's few columns, found by
/// a scan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values(Vec<(&'static str, f64)>);

impl FromIterator<(&'static str, f64)> for Values {
    fn from_iter<I: IntoIterator<Item = (&'static str, f64)>>(iter: I) -> Values {
        Values(iter.into_iter().collect())
    }
}

impl Values {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    pub fn count(&self, name: &str) -> Option<u64> {
        self.get(name).filter(|v| *v >= 0.0).map(|v| v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Column] = &[
        column(&["reserve_pool_size", "reserve_pool"], Unit::Count),
        column(&["total_wait_time"], Unit::Microseconds),
        column(&["absent_everywhere"], Unit::Count),
    ];

    /// Makes the `cell`th value (row after row) NULL.
    fn null(rows: &mut Rows, cell: usize) {
        let Stored::Text { cells, .. } = &mut rows.stored else {
            unreachable!("literal rows are text");
        };
        cells[cell] = None;
    }

    #[test]
    fn aliases_units_unknown_and_missing_columns() {
        let rows = Rows::new(
            &[
                "name",
                "reserve_pool",
                "total_wait_time",
                "brand_new_column",
            ],
            &[&["db", "3", "2500000", "x"]],
        );
        let values = rows.iter().next().unwrap().read(TABLE);
        assert_eq!(values.count("reserve_pool_size"), Some(3));
        assert_eq!(values.get("total_wait_time"), Some(2.5));
        assert_eq!(values.get("absent_everywhere"), None);
    }

    #[test]
    fn each_row_reads_its_own_values() {
        let mut rows = Rows::new(
            &["name", "total_wait_time"],
            &[&["a", "1000000"], &["b", "2000000"], &["c", "3000000"]],
        );
        null(&mut rows, 3);
        let read: Vec<(Option<&str>, Option<f64>)> = rows
            .iter()
            .map(|r| (r.text(&["name"]), r.read(TABLE).get("total_wait_time")))
            .collect();
        assert_eq!(
            read,
            [
                (Some("a"), Some(1.0)),
                (Some("b"), None),
                (Some("c"), Some(3.0))
            ]
        );
    }

    #[test]
    fn null_and_garbage_are_absent() {
        let mut rows = Rows::new(&["total_wait_time"], &[&["not a number"]]);
        assert_eq!(
            rows.iter()
                .next()
                .unwrap()
                .read(TABLE)
                .get("total_wait_time"),
            None
        );
        null(&mut rows, 0);
        assert_eq!(rows.iter().next().unwrap().text(&["total_wait_time"]), None);
    }
}
