//! One module per command; each turns parsed arguments into an exit code.

pub mod analyze;
pub mod benchmark;
pub mod check;
pub mod demo;
pub mod rules;
pub mod run;
pub mod size;
pub mod validate;
