//! Sequential scanning of a segment's log file in large windows, batch by batch. Used by
//! recovery (full validation), index rebuilds and timestamp searches. Never trusts what it
//! reads: a bad length or CRC ends the scan with the reason, it never panics.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::batch::{self, BatchError, BatchHeader, BATCH_HEADER_SIZE_BYTES};
use super::error::Result;
use super::file::DirectFile;

/// Bytes read per scan window.
const SCAN_WINDOW_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Reached the end limit exactly.
    End,
    /// The visitor asked to stop.
    Visitor,
    /// The bytes at `position` are not a valid batch (torn write, garbage, zeros).
    Invalid { position: u64, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Position just past the last batch visited.
    pub end_position: u64,
    /// One past the last offset visited, if any batch was.
    pub next_offset: Option<i64>,
    pub stop: ScanStop,
}

pub struct ScannedBatch<'a> {
    pub position: u64,
    pub header: &'a BatchHeader,
    /// The whole batch, a slice of the scan window.
    pub bytes: Bytes,
}

/// Visits batches from `start_position` up to `end_position`. With `validate`, each batch is
/// checked in full (CRC-32C) and base offsets must follow on from `expected_offset`, when given.
/// `batch_size_max_bytes` bounds what a length field may claim.
pub async fn scan(
    file: &DirectFile,
    start_position: u64,
    end_position: u64,
    validate: bool,
    mut expected_offset: Option<i64>,
    batch_size_max_bytes: usize,
    mut visit: impl FnMut(ScannedBatch<'_>) -> ControlFlow<()>,
) -> Result<ScanOutcome> {
    let mut position = start_position;
    let mut next_offset = None;
    let mut window = Bytes::new();
    let mut window_position = start_position;
    loop {
        if position >= end_position {
            return Ok(ScanOutcome {
                end_position: position,
                next_offset,
                stop: ScanStop::End,
            });
        }
        let invalid = |reason: String| ScanOutcome {
            end_position: position,
            next_offset,
            stop: ScanStop::Invalid { position, reason },
        };
        let in_window = (position - window_position) as usize;
        let available = window.len().saturating_sub(in_window);
        // Make sure the window holds the header, then the whole batch.
        let mut needed = BATCH_HEADER_SIZE_BYTES;
        if available >= BATCH_HEADER_SIZE_BYTES {
            match batch::peek_header(&window[in_window..]) {
                Ok(header) => needed = header.size_bytes(),
                Err(error) => return Ok(invalid(error.to_string())),
            }
            if needed > batch_size_max_bytes {
                return Ok(invalid(format!("batch claims {needed} bytes")));
            }
        }
        if (end_position - position) < needed as u64 {
            return Ok(invalid(
                BatchError::TruncatedBatch {
                    size_bytes: needed,
                    available_bytes: (end_position - position) as usize,
                }
                .to_string(),
            ));
        }
        if available < needed {
            let size = needed
                .max(SCAN_WINDOW_BYTES)
                .min((end_position - position) as usize);
            window = file.read_at(position, size).await?;
            window_position = position;
            if window.len() < needed {
                return Ok(invalid("file ends inside a batch".to_string()));
            }
            continue;
        }
        let batch_bytes = window.slice(in_window..in_window + needed);
        let header = if validate {
            match batch::validate(&batch_bytes) {
                Ok(header) => header,
                Err(error) => return Ok(invalid(error.to_string())),
            }
        } else {
            batch::peek_header(&batch_bytes).expect("peeked above")
        };
        if let Some(expected) = expected_offset {
            if header.base_offset.get() != expected {
                return Ok(invalid(format!(
                    "base offset {} where {expected} was expected",
                    header.base_offset.get()
                )));
            }
        }
        let last_offset = header.last_offset();
        let flow = visit(ScannedBatch {
            position,
            header,
            bytes: batch_bytes.clone(),
        });
        position += needed as u64;
        next_offset = Some(last_offset + 1);
        if validate {
            expected_offset = Some(last_offset + 1);
        }
        if flow.is_break() {
            return Ok(ScanOutcome {
                end_position: position,
                next_offset,
                stop: ScanStop::Visitor,
            });
        }
    }
}
