//! Command-line tools. Each subcommand lives in its own module and returns `anyhow` errors,
//! which `main` prints as one line.

pub mod dump_log;
pub mod tune;
