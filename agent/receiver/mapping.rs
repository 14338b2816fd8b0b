//! Which OTLP metric feeds which figure of the pool model: one table for both generations of the
//! semantic conventions' pool metrics (`db.client.connection.*` in seconds, the older
//! `db.client.connections.*` in milliseconds) and the figures the poolwatch SQLAlchemy integration
//! adds under `poolwatch.pool.*`. A metric not in the table is accepted and ignored.

/// A figure of one pool that a metric feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Figure {
    Used,
    Idle,
    Pending,
    Max,
    IdleMax,
    IdleMin,
    PoolSize,
    MaxOverflow,
    Timeouts,
    Opened,
    Closed,
    ConnectionErrors,
    WaitTime,
    UseTime,
    CreateTime,
}

impl Figure {
    pub const COUNT: usize = 15;

    pub fn index(self) -> usize {
        self as usize
    }

    /// How its data points aggregate.
    pub fn shape(self) -> Shape {
        match self {
            Figure::Used
            | Figure::Idle
            | Figure::Pending
            | Figure::Max
            | Figure::IdleMax
            | Figure::IdleMin
            | Figure::PoolSize
            | Figure::MaxOverflow => Shape::Current,
            Figure::Timeouts | Figure::Opened | Figure::Closed | Figure::ConnectionErrors => {
                Shape::Counter
            }
            Figure::WaitTime | Figure::UseTime | Figure::CreateTime => Shape::Histogram,
        }
    }
}

/// How a figure's data points are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A value as of now (a gauge or an up-down counter): the latest per stream, summed over a
    /// pool's streams.
    Current,
    /// A monotonic count: increases summed into a running total.
    Counter,
    /// An explicit-bucket histogram of durations: increases summed into a running histogram.
    Histogram,
}

/// How one metric name maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mapping {
    /// One figure.
    To(Figure),
    /// `used` or `idle`, by the value of this attribute.
    ByState(&'static str),
    /// A duration histogram, with the scale to seconds its name implies when the metric has no
    /// unit.
    Time(Figure, f64),
}

/// The attribute naming a pool, current and older conventions.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
pub const OLD_POOL_NAME: &str = "pool.name";

/// Every metric the receiver reads.
pub fn mapping(name: &str) -> Option<Mapping> {
    use Figure::*;
    use Mapping::{ByState, Time, To};
    let (suffix, seconds) = if let Some(s) = name.strip_prefix("db.client.connection.") {
        (s, true)
    } else if let Some(s) = name.strip_prefix("db.client.connections.") {
        (s, false)
    } else {
        return match name.strip_prefix("poolwatch.pool.")? {
            "size" => Some(To(PoolSize)),
            "max_overflow" => Some(To(MaxOverflow)),
            "connections.opened" => Some(To(Opened)),
            "connections.closed" => Some(To(Closed)),
            "connection_errors" => Some(To(ConnectionErrors)),
            _ => None,
        };
    };
    let time_scale = if seconds { 1.0 } else { 0.001 };
    Some(match (suffix, seconds) {
        ("count", true) => ByState("db.client.connection.state"),
        ("usage", false) => ByState("state"),
        ("max", _) => To(Max),
        ("idle.max", _) => To(IdleMax),
        ("idle.min", _) => To(IdleMin),
        ("pending_requests", _) => To(Pending),
        ("timeouts", _) => To(Timeouts),
        ("wait_time", _) => Time(WaitTime, time_scale),
        ("use_time", _) => Time(UseTime, time_scale),
        ("create_time", _) => Time(CreateTime, time_scale),
        _ => return None,
    })
}

/// The factor from a duration metric's UCUM unit to seconds; `None` for a unit that is not a
/// duration (the name's convention then applies).
pub fn seconds_per_unit(unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" => Some(1e-6),
        "ns" => Some(1e-9),
        "min" => Some(60.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_generations_and_the_integration_names_map() {
        let cases = [
            (
                "db.client.connection.count",
                Mapping::ByState("db.client.connection.state"),
            ),
            ("db.client.connections.usage", Mapping::ByState("state")),
            ("db.client.connection.max", Mapping::To(Figure::Max)),
            ("db.client.connections.max", Mapping::To(Figure::Max)),
            (
                "db.client.connections.pending_requests",
                Mapping::To(Figure::Pending),
            ),
            (
                "db.client.connection.wait_time",
                Mapping::Time(Figure::WaitTime, 1.0),
            ),
            (
                "db.client.connections.use_time",
                Mapping::Time(Figure::UseTime, 0.001),
            ),
            ("poolwatch.pool.size", Mapping::To(Figure::PoolSize)),
            (
                "poolwatch.pool.connections.closed",
                Mapping::To(Figure::Closed),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(mapping(name), Some(expected), "{name}");
        }
        for other in [
            "db.client.connection.usage",
            "db.client.connections.count",
            "http.server.request.duration",
            "poolwatch.pool.utilization",
        ] {
            assert_eq!(mapping(other), None, "{other}");
        }
    }

    #[test]
    fn figure_indexes_are_dense() {
        assert_eq!(Figure::CreateTime.index(), Figure::COUNT - 1);
    }
}
