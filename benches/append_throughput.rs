//! Sequential append throughput of the partition log next to `fio` direct-IO sequential writes
//! of the same block size on the same filesystem, for 16 KiB and 1 MiB batches, durable and not.
//!
//! - non-durable: append continuously, then `flush()`; the flush is timed. fio: `--direct=1
//!   --rw=write --end_fsync=1`, at queue depth 1 (`psync`) and with `io_uring` at the depth of
//!   ringlog's writer (`write_inflight_bytes_max / block size`); ringlog is held against the
//!   faster of the two.
//! - durable at depth D: D appenders, each appending one batch and waiting for it to be durable
//!   (`wait_durable`, shared fdatasyncs: group commit) before the next. fio: `--direct=1
//!   --rw=write --fdatasync=1` at the same depth (`psync` for 1, `io_uring` above).
//!
//! The cases run in rounds (`RINGLOG_BENCH_ROUNDS`, default 12): in each round every case runs
//! ringlog and fio back to back, ringlog first in odd rounds and fio first in even ones, so that
//! each ratio compares figures taken moments apart on a disk whose speed drifts; the report
//! gives medians over the rounds. Before every run the benchmark calls sync(2) and waits
//! `RINGLOG_BENCH_SETTLE_MS` (default 1000) for the previous run's deletions to settle (see
//! `settle`). A plain program
//! (`harness = false`), not criterion: each figure is one long sequential run, as fio measures it.
//!
//! Environment: `RINGLOG_BENCH_DIR` (default `target/bench-tmp`), `RINGLOG_BENCH_BYTES` (data
//! per row, default 1GiB), `RINGLOG_BENCH_QD1_DURABLE_BYTES` (data per durable row at depth 1,
//! one sync per batch, default 128MiB but at least 512 batches), `RINGLOG_BENCH_ROUNDS`,
//! `RINGLOG_BENCH_CASES` (only the rows whose label contains one of these comma-separated
//! words, e.g. `16kib-durable-qd1`), `RINGLOG_BENCH_CPU` (bind the executor and fio to this
//! CPU; unbound by default), and overrides of single log settings (see
//! `bench_log_config`). `--json PATH` also writes the results as JSON. Every file it creates is
//! removed before it exits.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringlog::storage::{batch, file, BatchCache, LogConfig, PartitionLog, SpaceGuard};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

const BATCH_SIZES_BYTES: [u64; 2] = [16 * KIB, MIB];
const ROW_BYTES_DEFAULT: u64 = GIB;
const QD1_DURABLE_BYTES_DEFAULT: u64 = 128 * MIB;
/// A durable row at depth 1 appends at least this many batches, so that 1 MiB rows last long
/// enough to measure.
const QD1_DURABLE_BATCHES_MIN: u64 = 512;
/// Per-round ratios spread from about 50% to over 110% on a shared VM: the median of 6 moved
/// by 25 points between runs of one build.
const ROUNDS_DEFAULT: usize = 12;
const SETTLE_MS_DEFAULT: u64 = 1000;
const BENCH_DIR_DEFAULT: &str = "target/bench-tmp";
/// Records per batch: one per KiB, as a producer of 1 KiB messages would send.
const RECORD_SIZE_BYTES: u64 = KIB;
/// The shard's batch cache during the run; appends insert into it and evict from it.
const CACHE_SIZE_BYTES: usize = 64 * MIB as usize;
/// ringlog should reach this share of the comparable fio figure.
const TARGET_RATIO: f64 = 0.70;
/// fio and this report count MB as 10^6 bytes.
const BYTES_PER_MB: f64 = 1e6;
/// The request buffers of a run are made before the clock starts when they fit in this much
/// memory; beyond it each is made inside the timed loop, and the report says so.
const PREBUILT_REQUESTS_BYTES_MAX: u64 = 2 * GIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    NonDurable,
    /// This many appenders, each waiting for its batch to be durable before the next.
    Durable {
        depth: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Case {
    batch_size_bytes: u64,
    mode: Mode,
    batch_count: u64,
}

impl Case {
    fn total_bytes(&self) -> u64 {
        self.batch_size_bytes * self.batch_count
    }

    fn mode_label(&self) -> String {
        match self.mode {
            Mode::NonDurable => "non-durable".to_string(),
            Mode::Durable { depth } => format!("durable qd{depth}"),
        }
    }

    fn label(&self) -> String {
        format!(
            "{}-{}",
            size_label(self.batch_size_bytes),
            self.mode_label()
        )
    }

    /// The label without spaces, lower case, as `RINGLOG_BENCH_CASES` matches it.
    fn key(&self) -> String {
        self.label()
            .replace(' ', "-")
            .replace("-KiB", "KiB")
            .replace("-MiB", "MiB")
            .to_ascii_lowercase()
    }

    /// The fio runs this case is compared with: (ioengine, queue depth).
    fn fio_variants(&self) -> Vec<(String, u64)> {
        match self.mode {
            Mode::NonDurable => vec![
                ("psync".into(), 1),
                ("io_uring".into(), writer_depth(self.batch_size_bytes)),
            ],
            Mode::Durable { depth: 1 } => vec![("psync".into(), 1)],
            Mode::Durable { depth } => vec![("io_uring".into(), depth)],
        }
    }
}

struct RinglogRun {
    elapsed: Duration,
    /// The request buffers were all made before the clock started (else inside the loop).
    requests_prebuilt: bool,
    /// Minor page faults of the executor thread while the clock ran: fresh memory touched.
    page_fault_count: u64,
    /// CPU time of the executor thread while the clock ran: how close to CPU-bound it was.
    cpu_time: Duration,
    group_commit_count: u64,
    /// Group commits that needed an fdatasync; the others were O_DSYNC writes alone.
    fdatasync_count: u64,
}

impl RinglogRun {
    fn bytes_per_s(&self, case: &Case) -> f64 {
        case.total_bytes() as f64 / self.elapsed.as_secs_f64()
    }
}

/// One round of one case: ringlog's run and fio's, taken back to back.
struct Round {
    ringlog: RinglogRun,
    /// fio's bandwidth in bytes per second per variant, or why there is none.
    fio: Vec<Result<f64, String>>,
}

impl Round {
    /// The fio figure ringlog is held against: the fastest variant.
    fn fio_reference(&self) -> Option<f64> {
        self.fio
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .reduce(f64::max)
    }

    fn ratio(&self, case: &Case) -> Option<f64> {
        Some(self.ringlog.bytes_per_s(case) / self.fio_reference()?)
    }
}

struct Row {
    case: Case,
    rounds: Vec<Round>,
}

impl Row {
    fn ringlog_mb_per_s(&self) -> Vec<f64> {
        let case = self.case;
        self.rounds
            .iter()
            .map(|r| mb_per_s(r.ringlog.bytes_per_s(&case)))
            .collect()
    }

    fn fio_mb_per_s(&self, variant: usize) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| r.fio.get(variant)?.as_ref().ok().map(|b| mb_per_s(*b)))
            .collect()
    }

    fn ratios(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| r.ratio(&self.case))
            .collect()
    }

    fn verdict(&self) -> &'static str {
        match median(&self.ratios()) {
            None => "no fio figure",
            Some(r) if r >= TARGET_RATIO => "met",
            Some(_) => "NOT met",
        }
    }
}

struct Settings {
    root: PathBuf,
    row_bytes: u64,
    qd1_durable_bytes: u64,
    rounds: usize,
    /// Pause before each run (see `settle`).
    settle: Duration,
    /// Only the cases whose key contains one of these.
    case_filters: Vec<String>,
    /// The CPU both ringlog's executor and fio are bound to; `None`: neither is bound.
    cpu: Option<usize>,
    json_path: Option<PathBuf>,
}

impl Settings {
    fn from_env_and_args() -> Result<Self, String> {
        let mut json_path = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--json" => {
                    let path = args.next().ok_or("--json needs a PATH")?;
                    json_path = Some(PathBuf::from(path));
                }
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                other => {
                    return Err(format!(
                        "unknown argument '{other}'; usage: append_throughput [--json PATH]"
                    ))
                }
            }
        }
        let rounds = env_count("RINGLOG_BENCH_ROUNDS", ROUNDS_DEFAULT as u64)?;
        if rounds == 0 {
            return Err("RINGLOG_BENCH_ROUNDS=0: at least one round is needed".to_string());
        }
        let settle_ms = env_count("RINGLOG_BENCH_SETTLE_MS", SETTLE_MS_DEFAULT)?;
        Ok(Settings {
            root: std::env::var_os("RINGLOG_BENCH_DIR")
                .map_or_else(|| PathBuf::from(BENCH_DIR_DEFAULT), PathBuf::from),
            row_bytes: env_bytes("RINGLOG_BENCH_BYTES", ROW_BYTES_DEFAULT)?,
            qd1_durable_bytes: env_bytes(
                "RINGLOG_BENCH_QD1_DURABLE_BYTES",
                QD1_DURABLE_BYTES_DEFAULT,
            )?,
            rounds: rounds as usize,
            settle: Duration::from_millis(settle_ms),
            case_filters: std::env::var("RINGLOG_BENCH_CASES")
                .unwrap_or_default()
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect(),
            cpu: match std::env::var("RINGLOG_BENCH_CPU") {
                Ok(cpu) => Some(
                    cpu.trim()
                        .parse()
                        .map_err(|_| format!("RINGLOG_BENCH_CPU={cpu}: not a CPU number"))?,
                ),
                Err(_) => None,
            },
            json_path,
        })
    }

    fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for batch_size_bytes in BATCH_SIZES_BYTES {
            for mode in [
                Mode::NonDurable,
                Mode::Durable { depth: 1 },
                Mode::Durable {
                    depth: writer_depth(batch_size_bytes),
                },
            ] {
                let batch_count = match mode {
                    Mode::Durable { depth: 1 } => {
                        (self.qd1_durable_bytes / batch_size_bytes).max(QD1_DURABLE_BATCHES_MIN)
                    }
                    _ => (self.row_bytes / batch_size_bytes).max(1),
                };
                let case = Case {
                    batch_size_bytes,
                    mode,
                    batch_count,
                };
                let key = case.key();
                if self.case_filters.is_empty()
                    || self.case_filters.iter().any(|f| key.contains(f.as_str()))
                {
                    cases.push(case);
                }
            }
        }
        cases
    }
}

/// A byte count from the environment: a plain number, or one with a K/M/G (binary) suffix.
fn env_bytes(name: &str, default: u64) -> Result<u64, String> {
    let Ok(value) = std::env::var(name) else {
        return Ok(default);
    };
    let text = value.trim().to_ascii_uppercase();
    let text = text.trim_end_matches("IB").trim_end_matches('B');
    let (digits, unit) = match text.char_indices().last() {
        Some((i, 'K')) => (&text[..i], KIB),
        Some((i, 'M')) => (&text[..i], MIB),
        Some((i, 'G')) => (&text[..i], GIB),
        _ => (text, 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{name}='{value}': expected a positive size such as 512MiB"))
}

/// A whole number from the environment, or `default` when the variable is not set.
fn env_count(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{name}='{text}': expected a whole number")),
    }
}

/// Batches in flight when the log's writer is full: fio's queue depth for the same bytes.
fn writer_depth(batch_size_bytes: u64) -> u64 {
    (bench_log_config().write_inflight_bytes_max / batch_size_bytes).max(1)
}

fn size_label(size_bytes: u64) -> String {
    if size_bytes >= MIB && size_bytes % MIB == 0 {
        format!("{} MiB", size_bytes / MIB)
    } else {
        format!("{} KiB", size_bytes / KIB)
    }
}

/// A valid batch of exactly `size_bytes` bytes, one record per KiB.
fn make_batch(size_bytes: u64) -> Vec<u8> {
    let size_bytes = size_bytes as usize;
    assert!(size_bytes > batch::BATCH_HEADER_SIZE_BYTES);
    let payload: Vec<u8> = (0..size_bytes - batch::BATCH_HEADER_SIZE_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let records_count = (size_bytes as u64 / RECORD_SIZE_BYTES).max(1) as i32;
    batch::build_batch(ringlog::storage::now_ms(), records_count, &payload, None)
}

/// The request buffers of one run, handed out in order to however many appenders.
struct Requests {
    template: Vec<u8>,
    prebuilt: RefCell<std::vec::IntoIter<BytesMut>>,
    remaining: Cell<u64>,
}

impl Requests {
    /// The next request, or `None` once the run has all of them.
    fn next(&self) -> Option<BytesMut> {
        let remaining = self.remaining.get().checked_sub(1)?;
        self.remaining.set(remaining);
        Some(
            self.prebuilt
                .borrow_mut()
                .next()
                .unwrap_or_else(|| BytesMut::from(&self.template[..])),
        )
    }
}

/// Appends `case` into a fresh log in `dir` with the default `LogConfig`, then removes it.
async fn run_ringlog(dir: PathBuf, case: Case) -> Result<RinglogRun, String> {
    let fail = |what: &str, error: ringlog::storage::StorageError| format!("{what}: {error}");
    let parent = dir.parent().expect("log directory has a parent");
    file::prime_device(parent)
        .await
        .map_err(|e| fail("priming the device", e))?;
    let cache = Rc::new(BatchCache::new(CACHE_SIZE_BYTES));
    let space = Rc::new(SpaceGuard::unlimited());
    let (log, _) = PartitionLog::open(&dir, bench_log_config(), cache, space)
        .await
        .map_err(|e| fail("opening the log", e))?;
    let template = make_batch(case.batch_size_bytes);
    // The request buffers a broker would have read from its sockets: reading them is the
    // network layer's cost, not the log's.
    let requests_prebuilt = case.total_bytes() <= PREBUILT_REQUESTS_BYTES_MAX;
    let prebuilt_count = if requests_prebuilt {
        case.batch_count
    } else {
        0
    };
    // Carved out of one allocation, as requests read into a connection's buffer are: one
    // allocation each would make every free an munmap on the executor, a cost of this
    // benchmark's set-up and not of a broker, whose request buffers come from a warm heap.
    let mut arena = BytesMut::with_capacity((prebuilt_count * case.batch_size_bytes) as usize);
    let prebuilt = (0..prebuilt_count)
        .map(|_| {
            arena.extend_from_slice(&template);
            arena.split_to(template.len())
        })
        .collect::<Vec<_>>();
    let requests = Rc::new(Requests {
        template,
        prebuilt: RefCell::new(prebuilt.into_iter()),
        remaining: Cell::new(case.batch_count),
    });

    let (page_faults_before, cpu_before) = thread_usage();
    let start = Instant::now();
    match case.mode {
        Mode::NonDurable => {
            while let Some(record_set) = requests.next() {
                log.append(record_set, 0)
                    .await
                    .map_err(|e| fail("append", e))?;
            }
        }
        Mode::Durable { depth } => {
            // One task per producer waiting on its own batch; their waits share fdatasyncs.
            let producers = (0..depth).map(|_| {
                let (log, requests) = (Rc::clone(&log), Rc::clone(&requests));
                ringlog::runtime::spawn_local(async move {
                    while let Some(record_set) = requests.next() {
                        let info = log.append(record_set, 0).await?;
                        log.wait_durable(info.last_offset + 1).await?;
                    }
                    Ok(())
                })
            });
            for result in futures_util::future::join_all(producers).await {
                result.map_err(|e| fail("durable append", e))?;
            }
        }
    }
    log.flush().await.map_err(|e| fail("flush", e))?;
    let elapsed = start.elapsed();
    let (page_faults_after, cpu_after) = thread_usage();
    let page_fault_count = page_faults_after.saturating_sub(page_faults_before);
    let cpu_time = cpu_after.saturating_sub(cpu_before);

    let group_commit_count = log.group_commit_count();
    let fdatasync_count = log.fdatasync_count();
    log.close().await.map_err(|e| fail("close", e))?;
    drop(log);
    file::remove_dir_all(&dir)
        .await
        .map_err(|e| fail("removing the log", e))?;
    Ok(RinglogRun {
        elapsed,
        requests_prebuilt,
        page_fault_count,
        cpu_time,
        group_commit_count,
        fdatasync_count,
    })
}

/// The calling thread's minor page faults and CPU time (user + system) so far.
fn thread_usage() -> (u64, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid out-pointer for getrusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } != 0 {
        return (0, Duration::ZERO);
    }
    // SAFETY: getrusage returned 0, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (
        usage.ru_minflt as u64,
        time(usage.ru_utime) + time(usage.ru_stime),
    )
}

fn fio_installed() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs fio once (engine `psync` or `io_uring` at `depth`) and returns its write bandwidth in
/// bytes per second. Removes its file.
fn run_fio(
    path: &Path,
    case: &Case,
    engine: &str,
    depth: u64,
    cpu: Option<usize>,
) -> Result<f64, String> {
    let sync_arg = match case.mode {
        Mode::NonDurable => "--end_fsync=1",
        Mode::Durable { .. } => "--fdatasync=1",
    };
    let output = Command::new("fio")
        .args([
            "--name=ringlog-compare",
            "--rw=write",
            "--direct=1",
            "--output-format=json",
        ])
        .arg(format!("--filename={}", path.display()))
        .arg(format!("--bs={}", case.batch_size_bytes))
        .arg(format!("--size={}", case.total_bytes()))
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--iodepth={depth}"))
        .arg(sync_arg)
        .args(cpu.map(|cpu| format!("--cpus_allowed={cpu}")))
        .output();
    let _ = std::fs::remove_file(path);
    let output = output.map_err(|e| format!("running fio: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().next().unwrap_or("no message");
        return Err(format!("fio failed ({}): {reason}", output.status));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("fio's JSON output: {e}"))?;
    report["jobs"][0]["write"]["bw_bytes"]
        .as_f64()
        .filter(|bytes_per_s| *bytes_per_s > 0.0)
        .ok_or_else(|| "no write bandwidth in fio's JSON".to_string())
}

fn mb_per_s(bytes_per_s: f64) -> f64 {
    bytes_per_s / BYTES_PER_MB
}

/// The median (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// "median (min–max)" of MB/s figures.
fn spread_cell(values: &[f64], scale: f64, unit: &str) -> String {
    let Some(mid) = median(values) else {
        return "-".into();
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() == 1 {
        format!("{:.0}{unit}", mid * scale)
    } else {
        format!(
            "{:.0}{unit} ({:.0}-{:.0})",
            mid * scale,
            min * scale,
            max * scale
        )
    }
}

fn print_table(dir: &Path, rounds: usize, rows: &[Row]) {
    let config = bench_log_config();
    println!();
    println!("ringlog sequential append vs fio direct-IO sequential write");
    println!("directory: {}", dir.display());
    println!(
        "ringlog: default LogConfig ({} KiB write chunks, {} MiB of writes in flight, {} MiB segments), \
         one partition, one executor",
        config.write_chunk_bytes / KIB,
        config.write_inflight_bytes_max / MIB,
        config.segment_bytes / MIB,
    );
    println!(
        "{rounds} round(s), each case's ringlog and fio runs back to back (ringlog first in odd \
         rounds, fio first in even ones); figures are medians (min-max over the rounds); \
         MB = 10^6 bytes"
    );
    println!(
        "ratio = ringlog / fio in the same round (the faster fio variant for non-durable rows); \
         target >= {:.0}% (median ratio)",
        TARGET_RATIO * 100.0
    );
    println!();
    println!(
        "{:<7} {:<18} {:>8} {:>20} {:>10} {:>22} {:>22} {:>16}  target",
        "size",
        "mode",
        "data MiB",
        "ringlog MB/s",
        "batches/s",
        "fio psync qd1 MB/s",
        "fio io_uring MB/s",
        "ratio",
    );
    for row in rows {
        let variants = row.case.fio_variants();
        let mut psync = "-".to_string();
        let mut io_uring = "-".to_string();
        for (i, (engine, depth)) in variants.iter().enumerate() {
            let cell = spread_cell(&row.fio_mb_per_s(i), 1.0, "");
            if engine == "psync" {
                psync = cell;
            } else {
                io_uring = format!("{cell} qd{depth}");
            }
        }
        let batches_per_s: Vec<f64> = row
            .rounds
            .iter()
            .map(|r| row.case.batch_count as f64 / r.ringlog.elapsed.as_secs_f64())
            .collect();
        println!(
            "{:<7} {:<18} {:>8} {:>20} {:>10.0} {:>22} {:>22} {:>16}  {}",
            size_label(row.case.batch_size_bytes),
            row.case.mode_label(),
            row.case.total_bytes() / MIB,
            spread_cell(&row.ringlog_mb_per_s(), 1.0, ""),
            median(&batches_per_s).unwrap_or(0.0),
            psync,
            io_uring,
            spread_cell(&row.ratios(), 100.0, "%"),
            row.verdict(),
        );
    }
    println!();
    for row in rows {
        let Some(first) = row.rounds.first() else {
            continue;
        };
        let group_commits: Vec<String> = row
            .rounds
            .iter()
            .map(|r| {
                format!(
                    "{} ({} fdatasync)",
                    r.ringlog.group_commit_count, r.ringlog.fdatasync_count
                )
            })
            .collect();
        println!(
            "{:<7} {:<18} {} batches, group commits per round {}; round 1: executor CPU \
             {:.0}% busy, {:.1} µs and {:.1} page faults per batch; request buffers made {}",
            size_label(row.case.batch_size_bytes),
            row.case.mode_label(),
            row.case.batch_count,
            group_commits.join("/"),
            100.0 * first.ringlog.cpu_time.as_secs_f64() / first.ringlog.elapsed.as_secs_f64(),
            first.ringlog.cpu_time.as_secs_f64() * 1e6 / row.case.batch_count as f64,
            first.ringlog.page_fault_count as f64 / row.case.batch_count as f64,
            if first.ringlog.requests_prebuilt {
                "before the clock started"
            } else {
                "inside the timed loop"
            },
        );
        for round in &row.rounds {
            for ((engine, _), result) in row.case.fio_variants().iter().zip(&round.fio) {
                if let Err(reason) = result {
                    println!("        fio {engine}: {reason}");
                }
            }
        }
    }
}

fn results_json(dir: &Path, rows: &[Row]) -> serde_json::Value {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let case = row.case;
            let depth = match case.mode {
                Mode::NonDurable => serde_json::Value::Null,
                Mode::Durable { depth } => depth.into(),
            };
            let rounds: Vec<serde_json::Value> = row
                .rounds
                .iter()
                .enumerate()
                .map(|(index, round)| {
                    let fio: Vec<serde_json::Value> = case
                        .fio_variants()
                        .iter()
                        .zip(&round.fio)
                        .map(|((engine, depth), result)| {
                            serde_json::json!({
                                "engine": engine,
                                "depth": depth,
                                "mb_per_s": result.as_ref().ok().map(|b| mb_per_s(*b)),
                                "error": result.as_ref().err(),
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "ringlog_ran_first": ringlog_runs_first(index + 1),
                        "elapsed_s": round.ringlog.elapsed.as_secs_f64(),
                        "ringlog_mb_per_s": mb_per_s(round.ringlog.bytes_per_s(&case)),
                        "group_commit_count": round.ringlog.group_commit_count,
                        "fdatasync_count": round.ringlog.fdatasync_count,
                        "page_fault_count": round.ringlog.page_fault_count,
                        "executor_cpu_s": round.ringlog.cpu_time.as_secs_f64(),
                        "requests_prebuilt": round.ringlog.requests_prebuilt,
                        "fio": fio,
                        "ratio": round.ratio(&case),
                    })
                })
                .collect();
            serde_json::json!({
                "batch_size_bytes": case.batch_size_bytes,
                "durable": matches!(case.mode, Mode::Durable { .. }),
                "depth": depth,
                "batch_count": case.batch_count,
                "total_bytes": case.total_bytes(),
                "median_ringlog_mb_per_s": median(&row.ringlog_mb_per_s()),
                "median_ratio": median(&row.ratios()),
                "target_met": median(&row.ratios()).map(|r| r >= TARGET_RATIO),
                "rounds": rounds,
            })
        })
        .collect();
    serde_json::json!({
        "directory": dir.display().to_string(),
        "target_ratio": TARGET_RATIO,
        "results": results,
    })
}

fn run(settings: &Settings) -> Result<(), String> {
    let root_existed = settings.root.exists();
    std::fs::create_dir_all(&settings.root)
        .map_err(|e| format!("creating {}: {e}", settings.root.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("append-throughput-")
        .tempdir_in(&settings.root)
        .map_err(|e| format!("temporary directory in {}: {e}", settings.root.display()))?;
    let fio = fio_installed();
    if !fio {
        println!("fio not found: install it (apt-get install fio) for the raw-device comparison");
    }

    let mut rows: Vec<Row> = settings
        .cases()
        .into_iter()
        .map(|case| Row {
            case,
            rounds: Vec::new(),
        })
        .collect();
    let mut failure = None;
    'rounds: for round in 1..=settings.rounds {
        for row in rows.iter_mut() {
            let case = row.case;
            eprintln!(
                "round {round}/{}: {} ({} MiB)...",
                settings.rounds,
                case.label(),
                case.total_bytes() / MIB
            );
            let log_dir = tmp.path().join(format!("log-{}", case.key()));
            let run_ringlog_case = || {
                settle(settings.settle);
                let make = move || run_ringlog(log_dir, case);
                match settings.cpu {
                    Some(cpu) => {
                        ringlog::runtime::run_on_executor_bound("append-throughput", cpu, make)
                    }
                    None => ringlog::runtime::run_on_executor("append-throughput", make),
                }
                .map_err(|e| format!("executor: {e}"))
                .and_then(|result| result)
            };
            let run_fio_case = || -> Vec<Result<f64, String>> {
                if !fio {
                    return Vec::new();
                }
                let path = tmp.path().join("fio.dat");
                case.fio_variants()
                    .iter()
                    .map(|(engine, depth)| {
                        settle(settings.settle);
                        run_fio(&path, &case, engine, *depth, settings.cpu)
                    })
                    .collect()
            };
            // Alternate which goes first, so that a disk that speeds up or slows down over the
            // round (or after the previous run's deletions) favours neither side.
            let (ringlog, fio_runs) = if ringlog_runs_first(round) {
                let ringlog = run_ringlog_case();
                (ringlog, run_fio_case())
            } else {
                let fio_runs = run_fio_case();
                (run_ringlog_case(), fio_runs)
            };
            let ringlog = match ringlog {
                Ok(run) => run,
                Err(reason) => {
                    failure = Some(format!("ringlog {}: {reason}", case.label()));
                    break 'rounds;
                }
            };
            row.rounds.push(Round {
                ringlog,
                fio: fio_runs,
            });
        }
    }
    print_table(tmp.path(), settings.rounds, &rows);
    if let Some(path) = &settings.json_path {
        let json = serde_json::to_string_pretty(&results_json(tmp.path(), &rows))
            .map_err(|e| format!("encoding the results: {e}"))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("\nresults written to {}", path.display());
    }
    tmp.close()
        .map_err(|e| format!("removing benchmark files: {e}"))?;
    if !root_existed {
        // Only if empty: another run may be using it.
        let _ = std::fs::remove_dir(&settings.root);
    }
    failure.map_or(Ok(()), Err)
}

/// In round `round` (from 1), whether ringlog runs before fio: in odd rounds.
fn ringlog_runs_first(round: usize) -> bool {
    round % 2 == 1
}

/// Lets the previous run's aftermath finish before the next run starts: the writeback of its
/// metadata and the freeing of its deleted files' blocks. On a filesystem mounted with
/// `discard` (this project's VM), ext4 discards freed blocks synchronously (perf shows writes
/// waiting in `blkdev_issue_discard`) and a virtual disk's host then punches holes in its
/// image: work that would otherwise land in whichever run comes next.
fn settle(pause: Duration) {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(pause);
}

fn main() {
    let result = Settings::from_env_and_args().and_then(|settings| run(&settings));
    if let Err(reason) = result {
        eprintln!("append_throughput: {reason}");
        std::process::exit(1);
    }
}

/// The default log settings; `RINGLOG_BENCH_WRITE_CHUNK`, `RINGLOG_BENCH_SEGMENT_BYTES`,
/// `RINGLOG_BENCH_PREALLOCATE_BYTES`, `RINGLOG_BENCH_LARGE_WRITE` and
/// `RINGLOG_BENCH_INFLIGHT_BYTES` (e.g. `128KiB`)
/// override one setting each, to see what it costs.
fn bench_log_config() -> LogConfig {
    let mut config = LogConfig::default();
    if let Ok(chunk) = env_bytes("RINGLOG_BENCH_WRITE_CHUNK", config.write_chunk_bytes) {
        config.write_chunk_bytes = chunk;
    }
    if let Ok(bytes) = env_bytes("RINGLOG_BENCH_SEGMENT_BYTES", config.segment_bytes) {
        config.segment_bytes = bytes;
    }
    if let Ok(bytes) = env_bytes("RINGLOG_BENCH_PREALLOCATE_BYTES", config.preallocate_bytes) {
        config.preallocate_bytes = bytes;
    }
    if let Ok(bytes) = env_bytes("RINGLOG_BENCH_LARGE_WRITE", config.write_large_max_bytes) {
        config.write_large_max_bytes = bytes;
    }
    if let Ok(bytes) = env_bytes(
        "RINGLOG_BENCH_INFLIGHT_BYTES",
        config.write_inflight_bytes_max,
    ) {
        config.write_inflight_bytes_max = bytes;
    }
    config
}
