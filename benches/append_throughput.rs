//! Sequential append throughput of the partition log next to `fio` direct-IO sequential writes
//! of the same block size on the same filesystem, for 16 KiB and 1 MiB batches, durable and not.
//!
//! - non-durable: append continuously, then `flush()`; the flush is timed. fio: `--direct=1
//!   --rw=write --end_fsync=1`.
//! - durable: append one batch, `wait_durable`, then the next (queue depth 1). fio: `--direct=1
//!   --rw=write --fdatasync=1`.
//!
//! fio runs twice per case: at queue depth 1 (`psync`) and with `io_uring` at the depth of
//! ringlog's writer (`write_inflight_bytes_max / block size`); ringlog is held against the
//! faster of the two. A plain program (`harness = false`), not criterion: each figure is one long
//! sequential run, as fio measures it.
//!
//! Environment: `RINGLOG_BENCH_DIR` (default `target/bench-tmp`), `RINGLOG_BENCH_NONDURABLE_BYTES`
//! (default 1GiB), `RINGLOG_BENCH_DURABLE_BYTES` (default 128MiB). `--json PATH` also writes the
//! results as JSON. Every file it creates is removed before it exits.

use std::fmt::Write as _;
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
const NONDURABLE_BYTES_DEFAULT: u64 = GIB;
const DURABLE_BYTES_DEFAULT: u64 = 128 * MIB;
const BENCH_DIR_DEFAULT: &str = "target/bench-tmp";
/// Records per batch: one per KiB, as a producer of 1 KiB messages would send.
const RECORD_SIZE_BYTES: u64 = KIB;
/// The shard's batch cache during the run; appends insert into it and evict from it.
const CACHE_SIZE_BYTES: usize = 64 * MIB as usize;
/// ringlog should reach this share of the faster fio figure.
const TARGET_RATIO: f64 = 0.70;
/// fio and this report count MB as 10^6 bytes.
const BYTES_PER_MB: f64 = 1e6;
/// The request buffers of a run are made before the clock starts when they fit in this much
/// memory; beyond it each is made inside the timed loop, and the report says so.
const PREBUILT_REQUESTS_BYTES_MAX: u64 = 2 * GIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    NonDurable,
    Durable,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::NonDurable => "non-durable",
            Mode::Durable => "durable",
        }
    }
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

    fn label(&self) -> String {
        format!("{}-{}", size_label(self.batch_size_bytes), self.mode.name())
    }
}

struct RinglogRun {
    elapsed: Duration,
    /// The request buffers were all made before the clock started (else inside the loop).
    requests_prebuilt: bool,
    /// Minor page faults of the executor thread while the clock ran: fresh memory touched.
    page_fault_count: u64,
    group_commit_count: u64,
}

/// fio's figures for one case, each in bytes per second or why there is none.
struct FioRuns {
    queue_depth_1: Result<f64, String>,
    io_uring_depth: u64,
    io_uring: Result<f64, String>,
}

impl FioRuns {
    fn best_bytes_per_s(&self) -> Option<f64> {
        [&self.queue_depth_1, &self.io_uring]
            .into_iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .reduce(f64::max)
    }
}

struct Row {
    case: Case,
    ringlog: RinglogRun,
    /// `None` when fio is not installed.
    fio: Option<FioRuns>,
}

impl Row {
    fn ringlog_bytes_per_s(&self) -> f64 {
        self.case.total_bytes() as f64 / self.ringlog.elapsed.as_secs_f64()
    }

    fn ringlog_batches_per_s(&self) -> f64 {
        self.case.batch_count as f64 / self.ringlog.elapsed.as_secs_f64()
    }

    /// ringlog against the faster fio figure: what the target is judged on.
    fn ratio(&self) -> Option<f64> {
        let best = self.fio.as_ref()?.best_bytes_per_s()?;
        Some(self.ringlog_bytes_per_s() / best)
    }

    /// ringlog against fio at queue depth 1, the like-for-like figure for durable appends.
    fn ratio_queue_depth_1(&self) -> Option<f64> {
        let fio = self.fio.as_ref()?.queue_depth_1.as_ref().ok()?;
        Some(self.ringlog_bytes_per_s() / fio)
    }
}

struct Settings {
    root: PathBuf,
    nondurable_bytes: u64,
    durable_bytes: u64,
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
        Ok(Settings {
            root: std::env::var_os("RINGLOG_BENCH_DIR")
                .map_or_else(|| PathBuf::from(BENCH_DIR_DEFAULT), PathBuf::from),
            nondurable_bytes: env_bytes(
                "RINGLOG_BENCH_NONDURABLE_BYTES",
                NONDURABLE_BYTES_DEFAULT,
            )?,
            durable_bytes: env_bytes("RINGLOG_BENCH_DURABLE_BYTES", DURABLE_BYTES_DEFAULT)?,
            json_path,
        })
    }

    fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for batch_size_bytes in BATCH_SIZES_BYTES {
            for (mode, total_bytes) in [
                (Mode::NonDurable, self.nondurable_bytes),
                (Mode::Durable, self.durable_bytes),
            ] {
                cases.push(Case {
                    batch_size_bytes,
                    mode,
                    batch_count: (total_bytes / batch_size_bytes).max(1),
                });
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
    let mut prebuilt = (0..prebuilt_count)
        .map(|_| BytesMut::from(&template[..]))
        .collect::<Vec<_>>()
        .into_iter();

    let page_faults_before = thread_minor_page_faults();
    let start = Instant::now();
    for _ in 0..case.batch_count {
        let record_set = prebuilt
            .next()
            .unwrap_or_else(|| BytesMut::from(&template[..]));
        let info = log
            .append(record_set, 0)
            .await
            .map_err(|e| fail("append", e))?;
        if case.mode == Mode::Durable {
            log.wait_durable(info.last_offset + 1)
                .await
                .map_err(|e| fail("wait_durable", e))?;
        }
    }
    log.flush().await.map_err(|e| fail("flush", e))?;
    let elapsed = start.elapsed();
    let page_fault_count = thread_minor_page_faults().saturating_sub(page_faults_before);

    let group_commit_count = log.group_commit_count();
    log.close().await.map_err(|e| fail("close", e))?;
    drop(log);
    file::remove_dir_all(&dir)
        .await
        .map_err(|e| fail("removing the log", e))?;
    Ok(RinglogRun {
        elapsed,
        requests_prebuilt,
        page_fault_count,
        group_commit_count,
    })
}

/// Minor page faults of the calling thread so far.
fn thread_minor_page_faults() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid out-pointer for getrusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: getrusage returned 0, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    usage.ru_minflt as u64
}

fn fio_installed() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The same sequential write as `case` with fio, at queue depth 1 and with io_uring at the
/// depth of ringlog's writer.
fn run_fio_case(path: &Path, case: &Case) -> FioRuns {
    let inflight_bytes_max = bench_log_config().write_inflight_bytes_max;
    let io_uring_depth = (inflight_bytes_max / case.batch_size_bytes).max(1);
    FioRuns {
        queue_depth_1: run_fio(path, case, &["--ioengine=psync", "--iodepth=1"]),
        io_uring_depth,
        io_uring: run_fio(
            path,
            case,
            &[
                "--ioengine=io_uring",
                &format!("--iodepth={io_uring_depth}"),
            ],
        ),
    }
}

/// Runs fio once and returns its write bandwidth in bytes per second. Removes its file.
fn run_fio(path: &Path, case: &Case, engine_args: &[&str]) -> Result<f64, String> {
    let sync_arg = match case.mode {
        Mode::NonDurable => "--end_fsync=1",
        Mode::Durable => "--fdatasync=1",
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
        .args(engine_args)
        .arg(sync_arg)
        .output();
    let _ = std::fs::remove_file(path);
    let output = output.map_err(|e| format!("running fio: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().next().unwrap_or("no message");
        return Err(format!("fio failed ({}): {reason}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    fio_write_bytes_per_s(&stdout).ok_or_else(|| "no write bandwidth in fio's JSON".to_string())
}

/// `jobs[0].write.bw_bytes` from fio's JSON output, read by hand: the only field needed.
/// `"write"` also appears as a value (`"rw" : "write"`); the object is the one followed by `{`.
fn fio_write_bytes_per_s(json: &str) -> Option<f64> {
    let (write_at, _) = json.match_indices("\"write\"").find(|(i, key)| {
        json[i + key.len()..]
            .trim_start()
            .strip_prefix(':')
            .is_some_and(|rest| rest.trim_start().starts_with('{'))
    })?;
    let write = &json[write_at..];
    let key = "\"bw_bytes\"";
    let value = write[write.find(key)? + key.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    value[..end]
        .parse()
        .ok()
        .filter(|bytes_per_s: &f64| *bytes_per_s > 0.0)
}

fn mb_per_s(bytes_per_s: f64) -> f64 {
    bytes_per_s / BYTES_PER_MB
}

fn fio_cell(result: &Result<f64, String>) -> String {
    match result {
        Ok(bytes_per_s) => format!("{:.0}", mb_per_s(*bytes_per_s)),
        Err(_) => "failed".to_string(),
    }
}

fn percent_cell(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

fn print_table(dir: &Path, rows: &[Row]) {
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
        "MB = 10^6 bytes; ratio = ringlog / faster fio figure (target >= {:.0}%); \
         vs qd1 = ringlog / fio at queue depth 1",
        TARGET_RATIO * 100.0
    );
    println!();
    println!(
        "{:<7} {:<12} {:>8} {:>12} {:>9} {:>12} {:>18} {:>6} {:>6}  target",
        "size",
        "mode",
        "data MiB",
        "ringlog MB/s",
        "batches/s",
        "fio qd1 MB/s",
        "fio io_uring MB/s",
        "ratio",
        "vs qd1",
    );
    for row in rows {
        let (fio_qd1, fio_queued, target) = match &row.fio {
            None => ("-".into(), "-".into(), "no fio"),
            Some(fio) => (
                fio_cell(&fio.queue_depth_1),
                format!("{} (qd{})", fio_cell(&fio.io_uring), fio.io_uring_depth),
                match row.ratio() {
                    None => "no fio figure",
                    Some(r) if r >= TARGET_RATIO => "met",
                    Some(_) => "NOT met",
                },
            ),
        };
        println!(
            "{:<7} {:<12} {:>8} {:>12.0} {:>9.0} {:>12} {:>18} {:>6} {:>6}  {target}",
            size_label(row.case.batch_size_bytes),
            row.case.mode.name(),
            row.case.total_bytes() / MIB,
            mb_per_s(row.ringlog_bytes_per_s()),
            row.ringlog_batches_per_s(),
            fio_qd1,
            fio_queued,
            percent_cell(row.ratio()),
            percent_cell(row.ratio_queue_depth_1()),
        );
    }
    println!();
    for row in rows {
        println!(
            "{:<7} {:<12} ringlog {:.2} s, {} batches, {} group commits, {:.1} page faults per \
             batch, request buffers made {}",
            size_label(row.case.batch_size_bytes),
            row.case.mode.name(),
            row.ringlog.elapsed.as_secs_f64(),
            row.case.batch_count,
            row.ringlog.group_commit_count,
            row.ringlog.page_fault_count as f64 / row.case.batch_count as f64,
            if row.ringlog.requests_prebuilt {
                "before the clock started"
            } else {
                "inside the timed loop"
            },
        );
        if let Some(fio) = &row.fio {
            for (name, result) in [("qd1", &fio.queue_depth_1), ("io_uring", &fio.io_uring)] {
                if let Err(reason) = result {
                    println!("        fio {name}: {reason}");
                }
            }
        }
    }
}

fn json_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn json_number(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or("null".into(), |v| format!("{v:.3}"))
}

fn results_json(dir: &Path, rows: &[Row]) -> String {
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"directory\": {},\n  \"target_ratio\": {TARGET_RATIO},\n  \"results\": [",
        json_string(&dir.display().to_string())
    );
    for (i, row) in rows.iter().enumerate() {
        let fio_qd1 = row
            .fio
            .as_ref()
            .and_then(|f| f.queue_depth_1.as_ref().ok().copied());
        let fio_io_uring = row
            .fio
            .as_ref()
            .and_then(|f| f.io_uring.as_ref().ok().copied());
        let _ = write!(
            json,
            "{}\n    {{\"batch_size_bytes\": {}, \"mode\": {}, \"batch_count\": {}, \"total_bytes\": {}, \
             \"elapsed_s\": {}, \"ringlog_mb_per_s\": {}, \"ringlog_batches_per_s\": {}, \
             \"group_commit_count\": {}, \"requests_prebuilt\": {}, \"page_fault_count\": {}, \"fio_qd1_mb_per_s\": {}, \
             \"fio_io_uring_depth\": {}, \"fio_io_uring_mb_per_s\": {}, \"ratio\": {}, \
             \"ratio_vs_qd1\": {}, \"target_met\": {}}}",
            if i == 0 { "" } else { "," },
            row.case.batch_size_bytes,
            json_string(row.case.mode.name()),
            row.case.batch_count,
            row.case.total_bytes(),
            json_number(Some(row.ringlog.elapsed.as_secs_f64())),
            json_number(Some(mb_per_s(row.ringlog_bytes_per_s()))),
            json_number(Some(row.ringlog_batches_per_s())),
            row.ringlog.group_commit_count,
            row.ringlog.requests_prebuilt,
            row.ringlog.page_fault_count,
            json_number(fio_qd1.map(mb_per_s)),
            row.fio
                .as_ref()
                .map_or("null".into(), |f| f.io_uring_depth.to_string()),
            json_number(fio_io_uring.map(mb_per_s)),
            json_number(row.ratio()),
            json_number(row.ratio_queue_depth_1()),
            row.ratio()
                .map_or("null".into(), |r| (r >= TARGET_RATIO).to_string()),
        );
    }
    json.push_str("\n  ]\n}\n");
    json
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

    let mut rows = Vec::new();
    let mut failure = None;
    for case in settings.cases() {
        eprintln!(
            "running {} ({} MiB)...",
            case.label(),
            case.total_bytes() / MIB
        );
        let log_dir = tmp
            .path()
            .join(format!("log-{}", case.label().replace(' ', "")));
        let ringlog = ringlog::runtime::run_on_executor("append-throughput", move || {
            run_ringlog(log_dir, case)
        })
        .map_err(|e| format!("executor: {e}"))
        .and_then(|result| result);
        let ringlog = match ringlog {
            Ok(run) => run,
            Err(reason) => {
                failure = Some(format!("ringlog {}: {reason}", case.label()));
                break;
            }
        };
        let fio_runs = fio.then(|| run_fio_case(&tmp.path().join("fio.dat"), &case));
        rows.push(Row {
            case,
            ringlog,
            fio: fio_runs,
        });
    }
    print_table(tmp.path(), &rows);
    if let Some(path) = &settings.json_path {
        std::fs::write(path, results_json(tmp.path(), &rows))
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

fn main() {
    let result = Settings::from_env_and_args().and_then(|settings| run(&settings));
    if let Err(reason) = result {
        eprintln!("append_throughput: {reason}");
        std::process::exit(1);
    }
}

/// The default log settings, with the write chunk overridable by `RINGLOG_BENCH_WRITE_CHUNK`
/// (e.g. `128KiB`) to compare chunk sizes.
fn bench_log_config() -> LogConfig {
    let mut config = LogConfig::default();
    if let Ok(chunk) = env_bytes("RINGLOG_BENCH_WRITE_CHUNK", config.write_chunk_bytes) {
        config.write_chunk_bytes = chunk;
    }
    config
}
