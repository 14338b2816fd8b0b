//! Rows read by column name, and declarative column tables: a column known by several names
//! across versions is listed once with its aliases, its unit converted to the base unit here;
//! unknown columns are ignored, missing ones are absent.

use std::ops::Range;

use rustc_hash::FxHashMap;
use tokio_postgres::SimpleQueryMessage;

/// The rows of one simple-protocol query, as text. The values of all rows share one buffer, and
/// columns are found by name through one index, so reading a sample costs no allocation per
/// value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Values a row: one a column.
    width: usize,
    /// Column name → position (the first, should two share a name).
    index: FxHashMap<String, usize>,
    /// Every value's text, one after another.
    text: String,
    /// Row after row, one cell a column: where its value is in `text`, `None` for NULL.
    cells: Vec<Option<Range<usize>>>,
}

impl Rows {
    /// Builds rows from literal columns and values: tests feed the shapes of other versions.
    pub fn new(columns: &[&str], rows: &[&[&str]]) -> Rows {
        let mut out = Rows::default();
        out.set_columns(columns.iter().copied());
        for row in rows {
            out.push_row(row.iter().map(|v| Some(*v)));
        }
        out
    }

    /// Collects the first result set of a simple query.
    pub fn from_messages(messages: Vec<SimpleQueryMessage>) -> Rows {
        let mut out = Rows::default();
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) if out.width == 0 => {
                    out.set_columns(columns.iter().map(|c| c.name()));
                }
                SimpleQueryMessage::Row(row) => {
                    if out.width == 0 {
                        out.set_columns(row.columns().iter().map(|c| c.name()));
                    }
                    out.push_row((0..out.width).map(|i| row.get(i)));
                }
                _ => {}
            }
        }
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

    /// Appends a row; values past the columns are dropped and missing ones are NULL.
    fn push_row<'a>(&mut self, values: impl Iterator<Item = Option<&'a str>>) {
        let before = self.cells.len();
        for value in values.take(self.width) {
            self.cells.push(value.map(|v| {
                let start = self.text.len();
                self.text.push_str(v);
                start..self.text.len()
            }));
        }
        self.cells.resize(before + self.width, None);
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        // A row of no columns has no cells; there are none of those to iterate.
        self.cells
            .chunks(self.width.max(1))
            .map(|cells| Row { rows: self, cells })
    }
}

/// One row; values by column name.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    rows: &'a Rows,
    cells: &'a [Option<Range<usize>>],
}

impl<'a> Row<'a> {
    /// The text of the first of `names` this row has; `None` if absent or NULL.
    pub fn text(&self, names: &[&str]) -> Option<&'a str> {
        names.iter().find_map(|name| {
            let i = *self.rows.index.get(*name)?;
            let cell = self.cells.get(i)?.clone()?;
            self.rows.text.get(cell)
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
        rows.cells[3] = None;
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
        rows.cells[0] = None;
        assert_eq!(rows.iter().next().unwrap().text(&["total_wait_time"]), None);
    }
}
