//! The `ringlog` binary: one entry point for the broker and its tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringlog",
    version,
    about = "A Kafka-compatible streaming broker, thread-per-core on io_uring"
)]
struct Cli {
    /// Tracing filter, e.g. `info` or `ringlog=debug`.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the segments and record batches of one partition directory, checking each batch.
    #[command(
        after_help = "Examples:\n  ringlog dump-log ringlog-data/orders-0\n  ringlog dump-log --batches ringlog-data/orders-0"
    )]
    DumpLog(ringlog::cli::dump_log::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::DumpLog(args) => ringlog::cli::dump_log::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringlog: {error:#}");
            ExitCode::FAILURE
        }
    }
}
