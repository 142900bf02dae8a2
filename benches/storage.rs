//! Criterion micro-benchmarks of the storage hot paths: batch validation (CRC-32C), non-durable
//! append, and reads served from the batch cache and from disk.
//!
//! glommio I/O progresses only inside its executor, so the log benchmarks run on one dedicated
//! executor thread that takes "run N iterations of X" requests over a channel and answers with
//! the time they took, which criterion's `iter_custom` records. Logs live in a temporary
//! directory under `RINGLOG_BENCH_DIR` (default `target/bench-tmp`), removed at the end.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput};
use ringlog::storage::{batch, file, BatchCache, LogConfig, PartitionLog, ReadLimits, SpaceGuard};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Batch sizes of the validation benchmark.
const VALIDATE_BATCH_SIZES_BYTES: [usize; 3] = [KIB, 16 * KIB, MIB];
/// Batch size of the append and read benchmarks.
const LOG_BATCH_SIZE_BYTES: usize = 16 * KIB;
/// Records per batch: one per KiB, as a producer of 1 KiB messages would send.
const RECORD_SIZE_BYTES: usize = KIB;
/// One segment holds everything a benchmark writes, so no roll lands inside a measurement.
const SEGMENT_SIZE_BYTES: u64 = 1 << 30;
/// The append benchmark starts over in a fresh log once its log holds this much, which bounds
/// disk use however many iterations criterion asks for.
const APPEND_LOG_SIZE_MAX_BYTES: u64 = 256 * MIB as u64;
/// Batch cache of the append benchmark, as a shard would have.
const APPEND_CACHE_SIZE_BYTES: usize = 64 * MIB;
/// Data written into each read benchmark's log before it is read back, batch after batch.
const READ_LOG_SIZE_BYTES: usize = 64 * MIB;
/// Cache of the cached-read benchmark: holds the whole read log.
const READ_CACHE_SIZE_BYTES: usize = 2 * READ_LOG_SIZE_BYTES;
const BENCH_DIR_DEFAULT: &str = "target/bench-tmp";

/// A valid batch of exactly `size_bytes` bytes, one record per KiB.
fn make_batch(size_bytes: usize) -> Vec<u8> {
    assert!(size_bytes > batch::BATCH_HEADER_SIZE_BYTES);
    let payload: Vec<u8> = (0..size_bytes - batch::BATCH_HEADER_SIZE_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let records_count = (size_bytes / RECORD_SIZE_BYTES).max(1) as i32;
    batch::build_batch(ringlog::storage::now_ms(), records_count, &payload, None)
}

fn bench_validation(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("validate_record_set");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size_bytes in VALIDATE_BATCH_SIZES_BYTES {
        let bytes = make_batch(size_bytes);
        group.throughput(Throughput::Bytes(size_bytes as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(size_label(size_bytes)),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    batch::validate_record_set(std::hint::black_box(bytes))
                        .expect("benchmark batch is valid")
                })
            },
        );
    }
    group.finish();
}

fn bench_log(criterion: &mut Criterion, worker: &LogWorker) {
    let mut group = criterion.benchmark_group("partition_log");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50)
        .throughput(Throughput::Bytes(LOG_BATCH_SIZE_BYTES as u64));
    let label = size_label(LOG_BATCH_SIZE_BYTES);
    for (name, job) in [
        ("append_nondurable", Job::Append),
        ("read_cache", Job::ReadCached),
        ("read_disk", Job::ReadDisk),
    ] {
        group.bench_function(BenchmarkId::new(name, &label), |b| {
            b.iter_custom(|iterations| worker.run(job, iterations))
        });
    }
    group.finish();
}

fn size_label(size_bytes: usize) -> String {
    if size_bytes >= MIB {
        format!("{}MiB", size_bytes / MIB)
    } else {
        format!("{}KiB", size_bytes / KIB)
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Append,
    ReadCached,
    ReadDisk,
}

struct Request {
    job: Job,
    iterations: u64,
    reply: mpsc::Sender<Duration>,
}

/// The executor thread that runs every log benchmark, one request at a time.
struct LogWorker {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl LogWorker {
    fn start(dir: PathBuf) -> Self {
        let (requests, receiver) = mpsc::channel();
        let thread = thread::spawn(move || {
            ringlog::runtime::run_on_executor("bench-storage", move || serve(dir, receiver))
                .expect("benchmark executor runs");
        });
        LogWorker {
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    /// Runs `iterations` of `job` on the executor and returns the time they took.
    fn run(&self, job: Job, iterations: u64) -> Duration {
        let (reply, answer) = mpsc::channel();
        self.requests
            .as_ref()
            .expect("worker is running")
            .send(Request {
                job,
                iterations,
                reply,
            })
            .expect("benchmark executor is alive");
        answer.recv().expect("benchmark executor answers")
    }
}

impl Drop for LogWorker {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the executor has already been printed; the bench fails through `run`.
            let _ = thread.join();
        }
    }
}

/// The executor side: serves requests until the sender goes away, then closes its logs.
async fn serve(dir: PathBuf, requests: mpsc::Receiver<Request>) {
    file::prime_device(&dir).await.expect("I/O probe file");
    let mut append: Option<AppendBench> = None;
    let mut read_cached: Option<ReadBench> = None;
    let mut read_disk: Option<ReadBench> = None;
    // Blocking on the channel parks the executor between requests. Nothing needs it then: the
    // kernel finishes writes still in flight and the next request reaps their completions.
    while let Ok(request) = requests.recv() {
        let elapsed = match request.job {
            Job::Append => {
                if append.is_none() {
                    append = Some(AppendBench::new(dir.join("append")));
                }
                let bench = append.as_mut().expect("just set");
                bench.run(request.iterations).await
            }
            Job::ReadCached => {
                if read_cached.is_none() {
                    let log_dir = dir.join("read-cache");
                    read_cached = Some(ReadBench::fill(&log_dir, READ_CACHE_SIZE_BYTES).await);
                }
                let bench = read_cached.as_mut().expect("just set");
                bench.run(request.iterations).await
            }
            Job::ReadDisk => {
                if read_disk.is_none() {
                    read_disk = Some(ReadBench::fill(&dir.join("read-disk"), 0).await);
                }
                let bench = read_disk.as_mut().expect("just set");
                bench.run(request.iterations).await
            }
        };
        // The bench side may have given up after a panic; nothing to do about it here.
        let _ = request.reply.send(elapsed);
    }
    let logs = [
        append.and_then(|a| a.log),
        read_cached.map(|r| r.log),
        read_disk.map(|r| r.log),
    ];
    for log in logs.into_iter().flatten() {
        log.close().await.expect("log closes");
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_SIZE_BYTES,
        ..LogConfig::default()
    }
}

async fn open_log(dir: &Path, cache_size_bytes: usize) -> Rc<PartitionLog> {
    let cache = Rc::new(BatchCache::new(cache_size_bytes));
    PartitionLog::open(dir, log_config(), cache, Rc::new(SpaceGuard::unlimited()))
        .await
        .expect("benchmark log opens")
        .0
}

/// Non-durable appends of one batch after another, as `acks=1` produces them: an append
/// returns once its bytes are copied and their write is issued (or waits while too many
/// writes are in flight).
struct AppendBench {
    dir: PathBuf,
    log: Option<Rc<PartitionLog>>,
    log_generation: u64,
    batch: Vec<u8>,
}

impl AppendBench {
    fn new(dir: PathBuf) -> Self {
        AppendBench {
            dir,
            log: None,
            log_generation: 0,
            batch: make_batch(LOG_BATCH_SIZE_BYTES),
        }
    }

    /// Starts over in a fresh, empty log when the current one is full enough (not timed).
    async fn fresh_log_if_due(&mut self) -> Rc<PartitionLog> {
        if let Some(log) = &self.log {
            if log.size_bytes() < APPEND_LOG_SIZE_MAX_BYTES {
                return Rc::clone(log);
            }
            log.close().await.expect("log closes");
            let old_dir = self.log_dir();
            file::remove_dir_all(&old_dir)
                .await
                .expect("old log removed");
            self.log_generation += 1;
        }
        let log = open_log(&self.log_dir(), APPEND_CACHE_SIZE_BYTES).await;
        self.log = Some(Rc::clone(&log));
        log
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.join(format!("bench-{}", self.log_generation))
    }

    async fn run(&mut self, iterations: u64) -> Duration {
        let log = self.fresh_log_if_due().await;
        // The request buffers a broker would have read from its sockets, made before the clock
        // starts.
        let record_sets: Vec<BytesMut> = (0..iterations)
            .map(|_| BytesMut::from(&self.batch[..]))
            .collect();
        let start = Instant::now();
        for record_set in record_sets {
            log.append(record_set, 0).await.expect("append");
        }
        start.elapsed()
    }
}

/// Reads of one batch at a time, walking a pre-filled log from its start and wrapping around.
struct ReadBench {
    log: Rc<PartitionLog>,
    records_per_batch: i64,
    /// Reads cycle over the first `batch_count` batches: the ones written out to disk.
    batch_count: u64,
    next_batch: u64,
}

impl ReadBench {
    /// Fills a fresh log (not timed). A cache of size 0 keeps nothing, so reads go to disk.
    async fn fill(dir: &Path, cache_size_bytes: usize) -> Self {
        let log = open_log(dir, cache_size_bytes).await;
        let batch = make_batch(LOG_BATCH_SIZE_BYTES);
        let batch_count_written = (READ_LOG_SIZE_BYTES / LOG_BATCH_SIZE_BYTES) as u64;
        for _ in 0..batch_count_written {
            log.append(BytesMut::from(&batch[..]), 0)
                .await
                .expect("append");
        }
        log.flush().await.expect("flush");
        log.set_high_watermark(log.log_end_offset());
        // The segment serves batches whose writes were in flight at their last append from
        // memory; keep the reads below them so that every read meets the disk.
        let memory_tail_batches =
            (log_config().write_inflight_bytes_max as usize / LOG_BATCH_SIZE_BYTES + 2) as u64;
        let records_per_batch = i64::from(
            batch::validate(&batch)
                .expect("valid batch")
                .records_count
                .get(),
        );
        ReadBench {
            log,
            records_per_batch,
            batch_count: batch_count_written - memory_tail_batches,
            next_batch: 0,
        }
    }

    async fn run(&mut self, iterations: u64) -> Duration {
        let limits = ReadLimits {
            end_offset_exclusive: self.log.high_watermark(),
            max_bytes: LOG_BATCH_SIZE_BYTES,
        };
        let start = Instant::now();
        for _ in 0..iterations {
            let offset = (self.next_batch % self.batch_count) as i64 * self.records_per_batch;
            self.next_batch += 1;
            let data = self.log.read(offset, limits).await.expect("read");
            assert_eq!(
                data.size_bytes(),
                LOG_BATCH_SIZE_BYTES,
                "one batch per read"
            );
            std::hint::black_box(data);
        }
        start.elapsed()
    }
}

/// `RINGLOG_BENCH_DIR`, or `target/bench-tmp` (on the build's filesystem, not a tmpfs).
fn bench_root() -> PathBuf {
    std::env::var_os("RINGLOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BENCH_DIR_DEFAULT))
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_validation(&mut criterion);

    let root = bench_root();
    let root_existed = root.exists();
    std::fs::create_dir_all(&root).expect("benchmark directory can be created");
    let tmp = tempfile::Builder::new()
        .prefix("storage-bench-")
        .tempdir_in(&root)
        .expect("temporary directory in the benchmark directory");
    {
        let worker = LogWorker::start(tmp.path().join("logs"));
        bench_log(&mut criterion, &worker);
    }
    tmp.close().expect("benchmark files removed");
    if !root_existed {
        // Only if empty: another run may be using it.
        let _ = std::fs::remove_dir(&root);
    }
    criterion.final_summary();
}
