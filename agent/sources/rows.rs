//! Rows read by column name, and declarative column tables: a column known by several names
//! across versions is listed once with its aliases, its unit converted to the base unit here;
//! unknown columns are ignored, missing ones are absent.

use std::collections::HashMap;

use tokio_postgres::SimpleQueryMessage;

/// The rows of one simple-protocol query, as text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// Builds rows from literal columns and values: tests feed the shapes of other versions.
    pub fn new(columns: &[&str], rows: &[&[&str]]) -> Rows {
        Rows {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| Some(v.to_string())).collect())
                .collect(),
        }
    }

    /// Collects the first result set of a simple query.
    pub fn from_messages(messages: Vec<SimpleQueryMessage>) -> Rows {
        let mut out = Rows::default();
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) if out.columns.is_empty() => {
                    out.columns = columns.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    out.rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }
}

/// One row; values by column name.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Option<String>],
}

impl<'a> Row<'a> {
    /// The text of the first of `names` this row has; `None` if absent or NULL.
    pub fn text(&self, names: &[&str]) -> Option<&'a str> {
        names.iter().find_map(|name| {
            let i = self.columns.iter().position(|c| c == name)?;
            self.values.get(i)?.as_deref()
        })
    }

    /// Reads every column of `table` this row has, converted to base units.
    pub fn read(&self, table: &[Column]) -> Values {
        let mut values = HashMap::new();
        for column in table {
            let parsed = self
                .text(column.names)
                .and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite());
            if let Some(v) = parsed {
                values.insert(column.names[0], v * column.unit.scale());
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

/// Values read from a row, keyed by the column's current name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values(HashMap<&'static str, f64>);

impl FromIterator<(&'static str, f64)> for Values {
    fn from_iter<I: IntoIterator<Item = (&'static str, f64)>>(iter: I) -> Values {
        Values(iter.into_iter().collect())
    }
}

impl Values {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
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
        rows.rows[0][0] = None;
        assert_eq!(rows.iter().next().unwrap().text(&["total_wait_time"]), None);
    }
}
