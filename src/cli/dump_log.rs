//! `ringlog dump-log DIR`: what a partition directory holds, read straight from the files with
//! the storage engine's own validation, like Kafka's `kafka-dump-log`. Read-only: it never
//! recovers, truncates or rewrites anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::storage::batch;
use crate::storage::checkpoint::PartitionCheckpoint;
use crate::storage::segment;

#[derive(clap::Args)]
pub struct Args {
    /// A partition directory, `<data-dir>/<topic>-<partition>`.
    dir: PathBuf,
    /// Print every batch, not only each segment's summary.
    #[arg(long)]
    batches: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut bases: Vec<i64> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("reading {}", args.dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| segment::parse_log_file_name(&entry.file_name().to_string_lossy()))
        .collect();
    bases.sort_unstable();
    if let Ok(bytes) = std::fs::read(args.dir.join(crate::storage::checkpoint::FILE_NAME)) {
        match PartitionCheckpoint::decode(&bytes) {
            Some(state) => println!(
                "partition state: log start offset {}, leader epochs {:?}",
                state.log_start_offset, state.epochs
            ),
            None => println!("partition state: unreadable"),
        }
    }
    let mut problems = 0;
    for base in bases {
        let path = args.dir.join(segment::file_name(base, segment::LOG_SUFFIX));
        // Plain buffered reads: this tool runs outside any shard.
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut position = 0usize;
        let mut batch_count = 0u64;
        let mut next_offset = base;
        let mut max_timestamp = i64::MIN;
        let mut stop = None;
        while position < bytes.len() {
            match batch::validate(&bytes[position..]) {
                Ok(header) => {
                    if header.base_offset.get() != next_offset {
                        stop = Some(format!(
                            "base offset {} where {next_offset} was expected",
                            header.base_offset.get()
                        ));
                        break;
                    }
                    if args.batches {
                        println!(
                            "  offset {}..={} position {position} size {} records {} epoch {} max_ts {} codec {}",
                            header.base_offset.get(),
                            header.last_offset(),
                            header.size_bytes(),
                            header.records_count.get(),
                            header.partition_leader_epoch.get(),
                            header.max_timestamp.get(),
                            header.compression_codec(),
                        );
                    }
                    next_offset = header.last_offset() + 1;
                    max_timestamp = max_timestamp.max(header.max_timestamp.get());
                    position += header.size_bytes();
                    batch_count += 1;
                }
                Err(error) => {
                    let rest_is_zero = bytes[position..].iter().all(|b| *b == 0);
                    if !rest_is_zero {
                        stop = Some(error.to_string());
                    }
                    break;
                }
            }
        }
        println!(
            "segment {base:020}: {batch_count} batches, offsets {base}..{next_offset}, {position} bytes of data in a {} byte file, max timestamp {}",
            bytes.len(),
            if max_timestamp == i64::MIN { "-".to_string() } else { max_timestamp.to_string() },
        );
        if let Some(reason) = stop {
            problems += 1;
            println!("  INVALID at position {position}: {reason}");
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
