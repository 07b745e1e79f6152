//! Command-line subcommands, one module each. `main.rs` parses the
//! arguments with clap and hands the chosen command to its module's `run`.

pub mod catalog;
