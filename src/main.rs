//! The `ringlog` binary: one entry point for the broker and its tools.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringlog",
    version,
    about = "A Kafka-compatible streaming broker, thread-per-core on io_uring"
)]
struct Cli {
    /// Tracing filter, e.g. `info` or `ringlog=debug` [default: the configuration file's
    /// `log_level` for `serve`, else info].
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. With no flags: a single node on 127.0.0.1:9092, data in ./ringlog-data.
    #[command(
        after_help = "Examples:\n  ringlog serve\n  ringlog serve --data-dir /var/lib/ringlog --kafka-addr 0.0.0.0:9092 --advertised-addr broker1:9092\n  ringlog serve --config /etc/ringlog/ringlog.toml --smp 4"
    )]
    Serve(ringlog::config::ServeArgs),
    /// Print the segments and record batches of one partition directory, checking each batch.
    #[command(
        after_help = "Examples:\n  ringlog dump-log ringlog-data/orders-0\n  ringlog dump-log --batches ringlog-data/orders-0"
    )]
    DumpLog(ringlog::cli::dump_log::Args),
    /// With the broker stopped: rebuild the metadata of partition directories it no longer
    /// explains (after a lost or damaged metadata log), so their data is served again.
    #[command(after_help = "Examples:
  ringlog recover-metadata --data-dir /var/lib/ringlog
  ringlog recover-metadata --data-dir ./ringlog-data --smp 4")]
    RecoverMetadata(ringlog::cli::recover_metadata::Args),
    /// Check or apply host tuning (CPU governor, IRQ affinity, I/O scheduler, sysctls, memlock)
    /// from a profile in tuning/. Exit codes: 0 as wanted, 1 settings differ, 2 bad profile,
    /// 3 some changes could not be applied.
    #[command(
        after_help = "Examples:\n  ringlog tune --check\n  ringlog tune --check --profile vm\n  sudo ringlog tune --apply --dry-run\n  sudo ringlog tune --apply --profile /etc/ringlog/tuning.toml"
    )]
    Tune(ringlog::cli::tune::Args),
    /// Create, list, describe, delete topics and change their configs.
    Topic(ringlog::cli::topic::Args),
    /// Send each line of stdin or a file as one message.
    Produce(ringlog::cli::produce::Args),
    /// Print messages of a topic to stdout.
    Consume(ringlog::cli::consume::Args),
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group(ringlog::cli::group::Args),
    /// Measure throughput and latency: producers, consumers, or both end to end.
    Bench(ringlog::cli::bench::Args),
}

fn main() -> ExitCode {
    let cli: Cli = ringlog::cli::parse_or_exit();
    if !matches!(cli.command, Command::Serve(_) | Command::Consume(_)) {
        ringlog::cli::die_on_closed_stdout();
    }
    // The broker's configuration file may set the filter, so it is read first; a flag wins.
    let serve_config = match &cli.command {
        Command::Serve(args) => Some(ringlog::config::ServerConfig::resolve(args)),
        _ => None,
    };
    let file_log_level = serve_config
        .as_ref()
        .and_then(|config| config.as_ref().ok())
        .and_then(|config| config.log_level.clone());
    let log_level = cli.log_level.or(file_log_level);
    let filter = tracing_subscriber::EnvFilter::try_new(log_level.as_deref().unwrap_or("info"));
    let filter_is_valid = filter.is_ok();
    tracing_subscriber::fmt()
        .with_env_filter(filter.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // A failed log write (stderr on a full disk) would otherwise be reported with
        // `eprintln!`, which panics when stderr cannot be written: lose the line, not the
        // broker.
        .log_internal_errors(false)
        // Colour codes only for a terminal: a log file or the journal would keep them as text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if !filter_is_valid {
        tracing::warn!(log_level = ?log_level, "not a valid log filter; logging at info");
    }
    let result = match cli.command {
        Command::Serve(_) => serve_config
            .expect("serve's configuration is resolved above")
            .and_then(ringlog::server::serve)
            .map(|()| ExitCode::SUCCESS),
        Command::DumpLog(args) => ringlog::cli::dump_log::run(args),
        Command::RecoverMetadata(args) => ringlog::cli::recover_metadata::run(args),
        Command::Tune(args) => ringlog::cli::tune::run(args),
        Command::Topic(args) => ringlog::cli::topic::run(args),
        Command::Produce(args) => ringlog::cli::produce::run(args),
        Command::Consume(args) => ringlog::cli::consume::run(args),
        Command::Group(args) => ringlog::cli::group::run(args),
        Command::Bench(args) => ringlog::cli::bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringlog: {error:#}");
            ExitCode::FAILURE
        }
    }
}
