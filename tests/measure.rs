//! The tests that compare a timing the machine measures with a model's prediction, in a test
//! binary of their own. Cargo runs test binaries one after another, so nothing else of the
//! suite runs beside them: in the main binary, the other tests' CPU use made the measured waits
//! longer than the pool's own (a ratio of 1.23 where the same run alone read 1.08).
//! Each module runs against the real services that `scripts/services.sh` starts.

// Test code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "measure/erlang_c.rs"]
mod erlang_c;
