//! One module per command; each turns parsed arguments into an exit code.

pub mod check;
pub mod rules;
pub mod run;
pub mod validate;
