//! Crash safety of the partition log: a child process appends with durable flushes and prints
//! every acknowledged batch; the parent SIGKILLs it at random moments, reopens the log and
//! checks that every acknowledged batch is there, byte-identical, that offsets are contiguous
//! and that nothing follows the last valid batch that was never written.
//!
//! The child is this same test binary, re-run with `--ignored --exact crash_child`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use ringlog::storage::{batch, LogConfig};

const CHILD_DIR_ENV: &str = "RINGLOG_CRASH_CHILD_DIR";
const ROUNDS: u64 = 24;
/// Concurrent appenders in the child, so acknowledgements come from shared group commits.
const CHILD_WRITERS: usize = 4;

fn crash_config() -> LogConfig {
    LogConfig {
        // Small segments so that kills land during rolls too.
        segment_bytes: 2 * 1024 * 1024,
        index_interval_bytes: 4096,
        preallocate_bytes: 1024 * 1024,
        // Kills land during chunk writes and large writes alike.
        write_chunk_bytes: 8 * 1024,
        write_large_max_bytes: 32 * 1024,
        ..LogConfig::default()
    }
}

/// The batch written for `token`: its payload starts with the token and the rest is a function
/// of it, so the parent can rebuild exactly what every stored batch must be.
fn batch_for(token: u64) -> Vec<u8> {
    let records = (token % 5 + 1) as i32;
    let payload_bytes = match token % 13 {
        0 => 200_000,
        1..=3 => 20_000,
        _ => 100 + (token.wrapping_mul(7919) % 6000) as usize,
    };
    let mut payload = token.to_be_bytes().to_vec();
    let filler = make_batch(token, 1, payload_bytes, 0);
    payload.extend_from_slice(&filler[batch::BATCH_HEADER_SIZE_BYTES..]);
    batch::build_batch(1_700_000_000_000 + token as i64, records, &payload, None)
}

fn token_of(stored: &[u8]) -> u64 {
    let start = batch::BATCH_HEADER_SIZE_BYTES;
    u64::from_be_bytes(stored[start..start + 8].try_into().unwrap())
}

/// Not a test by itself: the body of the child process.
#[test]
#[ignore]
fn crash_child() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR_ENV).expect("run by the crash test"));
    run(move || async move {
        let log = open(&dir, crash_config()).await;
        println!("READY {}", log.log_end_offset());
        let token_base = ringlog::storage::now_ms() as u64 * 1_000_000;
        let mut writers = Vec::new();
        for writer in 0..CHILD_WRITERS as u64 {
            let log = Rc::clone(&log);
            writers.push(ringlog::runtime::spawn_local(async move {
                // Bounded: the parent kills the child long before this ends.
                for sequence in 0..100_000u64 {
                    let token = token_base + sequence * CHILD_WRITERS as u64 + writer;
                    let bytes = batch_for(token);
                    let info = log
                        .append(BytesMut::from(&bytes[..]), 0)
                        .await
                        .expect("append");
                    log.wait_durable(info.last_offset + 1)
                        .await
                        .expect("durable");
                    println!("ACK {} {}", info.base_offset, info.last_offset);
                }
            }));
        }
        for writer in writers {
            writer.await;
        }
    });
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path) -> KillOnDrop {
    let exe = std::env::current_exe().expect("test binary path");
    let child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    KillOnDrop(child)
}

/// Reads every batch of the log in `dir` (recovering it) and returns (base, last, bytes).
fn reopen_and_read(dir: &Path) -> Vec<(i64, i64, Vec<u8>)> {
    let dir = dir.to_path_buf();
    let (sender, receiver) = std::sync::mpsc::channel();
    run(move || async move {
        let log = open_uncached(&dir, crash_config()).await;
        assert_eq!(log.high_watermark(), log.log_end_offset());
        let batches = read_all(&log, log.log_start_offset(), 1 << 20).await;
        let described = batches
            .into_iter()
            .map(|bytes| {
                let header = batch::validate(&bytes).expect("valid");
                (header.base_offset.get(), header.last_offset(), bytes)
            })
            .collect::<Vec<_>>();
        sender.send(described).unwrap();
    });
    receiver.recv().unwrap()
}

#[test]
fn acknowledged_durable_appends_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crash-0");
    let seed = std::env::var("RINGLOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| ringlog::storage::now_ms() as u64);
    println!("crash test seed {seed} (set RINGLOG_CRASH_SEED to replay the kill timings)");
    let mut random = seed;
    let mut next_random = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    // base offset → last offset of every batch ever acknowledged.
    let mut acknowledged: BTreeMap<i64, i64> = BTreeMap::new();
    let mut total_kills = 0;
    for round in 0..ROUNDS {
        let mut child = spawn_child(&dir);
        let stdout = child.0.stdout.take().unwrap();
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child has recovered the log, then let it run for a random while.
        let started = Instant::now();
        let mut ready = false;
        while !ready && started.elapsed() < Duration::from_secs(30) {
            if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(100)) {
                ready = line.contains("READY");
            }
        }
        assert!(ready, "round {round}: child never became ready");
        let run_for = Duration::from_millis(5 + next_random() % 250);
        std::thread::sleep(run_for);
        drop(child); // SIGKILL and reap.
        total_kills += 1;
        reader.join().unwrap();
        for line in lines_rx.try_iter() {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut fields = rest.split_whitespace().map(|f| f.parse::<i64>().unwrap());
                let (base, last) = (fields.next().unwrap(), fields.next().unwrap());
                acknowledged.insert(base, last);
            }
        }

        let stored = reopen_and_read(&dir);
        // Contiguous from the start, each batch exactly what the child wrote for its offset.
        let mut expected_offset = 0;
        for (base, last, bytes) in &stored {
            assert_eq!(
                *base, expected_offset,
                "round {round}: offsets not contiguous"
            );
            assert!(
                *bytes == assigned(&batch_for(token_of(bytes)), *base, 0),
                "round {round}: batch at {base} is not what was written"
            );
            expected_offset = last + 1;
        }
        let stored_by_base: BTreeMap<i64, i64> = stored
            .iter()
            .map(|(base, last, _)| (*base, *last))
            .collect();
        for (base, last) in &acknowledged {
            assert_eq!(
                stored_by_base.get(base),
                Some(last),
                "round {round}: acknowledged batch {base}..={last} lost (seed {seed})"
            );
        }
    }
    assert_eq!(total_kills, ROUNDS);
    assert!(
        acknowledged.len() > ROUNDS as usize,
        "the child acknowledged too little to prove anything: {}",
        acknowledged.len()
    );
    println!(
        "{total_kills} kills, {} acknowledged batches all present",
        acknowledged.len()
    );
}
