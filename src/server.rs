//! `ringlog serve`: checks the host, starts one shard per core, and on each shard recovers its
//! partitions, binds the Kafka port (SO_REUSEPORT) and serves connections until SIGTERM or
//! SIGINT; then it stops accepting, lets in-flight requests finish, flushes every log and exits.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::broker::messages::ShardRequest;
use crate::broker::Shard;
use crate::cluster::{ClusterMetadata, MetadataStore};
use crate::config::ServerConfig;
use crate::net::admission::{self, Admission};
use crate::net::budget::RequestBudget;
use crate::net::close_log;
use crate::net::connection::{self, ConnectionLimits, StopSignal};
use crate::net::listener::ShardListener;
use crate::runtime::mesh::{self, Mesh};
use crate::runtime::{run_shards, ShardPlacement, MEMLOCK_PER_SHARD_BYTES};
use crate::storage::notify::Notify;
use crate::storage::{file, BatchCache, SpaceGuard};

/// How often shards look at the shutdown flag and run housekeeping.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a drained shard looks whether the others have drained too.
const DRAIN_BARRIER_POLL: Duration = Duration::from_millis(5);

pub fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let _exclusive = preflight(&config)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while shutting down ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&shutdown))?;
        signal_hook::flag::register(signal, Arc::clone(&shutdown))?;
    }
    crate::metrics::configure(crate::metrics::Settings {
        shard_count: config.shard_count,
        per_partition: config.metrics_per_partition,
        data_dir: config.data_dir.clone(),
        disk_free_threshold_bytes: config.disk_free_threshold_bytes,
    });
    // Up before the shards, so that health answers and readiness reports recovery in progress.
    let admin = crate::admin::AdminServer::start(config.admin_addr)?;
    let config = Arc::new(config);
    tracing::info!(
        kafka_addr = %config.kafka_addr,
        data_dir = %config.data_dir.display(),
        shards = config.shard_count,
        "starting ringlog"
    );
    let placement = ShardPlacement {
        shard_count: config.shard_count,
        cpus: config.cpus.clone(),
    };
    let builder = mesh::builder::<ShardRequest>(config.shard_count);
    let drained_shards = Arc::new(AtomicUsize::new(0));
    let start_failed = Arc::new(AtomicBool::new(false));
    // Connection counts are per broker, and every shard accepts on its own.
    let admission = Arc::new(Admission::new(
        config.max_connections,
        config.max_connections_per_ip,
    ));
    let results = run_shards(&placement, move || {
        let config = Arc::clone(&config);
        let shutdown = Arc::clone(&shutdown);
        let drained_shards = Arc::clone(&drained_shards);
        let start_failed = Arc::clone(&start_failed);
        let admission = Arc::clone(&admission);
        async move {
            run_shard(
                config,
                builder,
                shutdown,
                start_failed,
                drained_shards,
                admission,
            )
            .await
            .map_err(|e| format!("{e:#}"))
        }
    })
    .context("starting the shard executors")?;
    drop(admin);
    let mut first_error = None;
    for result in results {
        if let Err(error) = result {
            first_error.get_or_insert(error);
        }
    }
    match first_error {
        Some(error) => Err(anyhow::anyhow!(error)),
        None => {
            tracing::info!("ringlog stopped cleanly");
            Ok(())
        }
    }
}

/// What makes this process the only broker on its data directory and Kafka port; held until
/// the process exits, when the kernel lets both go whatever the way out.
struct Exclusive {
    _data_dir_lock: std::fs::File,
    _port_claim: std::os::unix::net::UnixListener,
}

/// Start-up checks that end the process with one clear line instead of a backtrace.
fn preflight(config: &ServerConfig) -> anyhow::Result<Exclusive> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0 {
        let needed = MEMLOCK_PER_SHARD_BYTES * config.shard_count as u64;
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed {
            anyhow::bail!(
                "locked-memory limit is {} KiB but {} shards need {} KiB for io_uring: raise it (ulimit -l, or LimitMEMLOCK= in the systemd unit) or run fewer shards (--smp)",
                limit.rlim_cur / 1024,
                config.shard_count,
                needed / 1024
            );
        }
    }
    if !io_uring_available() {
        anyhow::bail!(
            "io_uring is not available on this kernel ({}): ringlog needs Linux 5.8 or newer with io_uring enabled (sysctl kernel.io_uring_disabled=0)",
            io::Error::last_os_error()
        );
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "data directory {} cannot be created: choose another with --data-dir",
            config.data_dir.display()
        )
    })?;
    let probe = config.data_dir.join(".write-probe");
    match std::fs::write(&probe, b"ringlog") {
        Ok(()) => {}
        // Writable but full: the broker starts, serves reads and refuses writes until space
        // returns.
        Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => {
            tracing::warn!(data_dir = %config.data_dir.display(), "the data directory's disk is full: starting to serve reads; produce is refused until space returns");
        }
        Err(error) => {
            return Err(error).with_context(|| {
                format!("data directory {} is not writable: fix its permissions or choose another with --data-dir", config.data_dir.display())
            });
        }
    }
    let _ = std::fs::remove_file(&probe);
    let data_dir_lock = lock_data_dir(&config.data_dir)?;
    // Before the listener check: a broker still recovering its logs has not bound the port yet,
    // and SO_REUSEPORT would let this one share it once both have.
    let port_claim = claim_port(config.kafka_addr)?;
    // A listener of a process that just exited can linger while its io_uring is torn down.
    let mut taken = listening_on(config.kafka_addr);
    for _ in 0..50 {
        if !taken {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        taken = listening_on(config.kafka_addr);
    }
    if taken {
        anyhow::bail!(
            "port {} is already in use by another listener: stop it or choose another port with --kafka-addr",
            config.kafka_addr
        );
    }
    Ok(Exclusive {
        _data_dir_lock: data_dir_lock,
        _port_claim: port_claim,
    })
}

/// The name of the lock file every broker holds in its data directory.
pub const DATA_DIR_LOCK_FILE: &str = ".lock";

/// Takes the data directory's lock (`flock`, released by the kernel when the process ends, so
/// a `kill -9` leaves nothing to clean up) and writes this process's id into it for the next
/// one's error message.
pub fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = data_dir.join(DATA_DIR_LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::WouldBlock {
            return Err(error).with_context(|| format!("cannot lock {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() {
            String::new()
        } else {
            format!(" (pid {holder})")
        };
        anyhow::bail!(
            "data directory {} is in use by another ringlog process{holder}: stop it, or give this broker another --data-dir",
            data_dir.display()
        );
    }
    // Only for the next process's message: a full disk may refuse it, the lock holds anyway.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Claims the Kafka port among ringlog processes of this network namespace: an abstract Unix
/// socket named after the port, which the kernel frees when the process ends. Keyed by port
/// alone, as two listeners on one port conflict whatever their addresses.
fn claim_port(addr: std::net::SocketAddr) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ringlog-kafka-port-{}", addr.port());
    let claim = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    std::os::unix::net::UnixListener::bind_addr(&claim).map_err(|error| {
        if error.kind() == io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} is already in use by another ringlog process: stop it or choose another port with --kafka-addr",
                addr
            )
        } else {
            anyhow::anyhow!("cannot claim port {addr}: {error}")
        }
    })
}

/// Whether a socket already listens on `addr`'s port, read from /proc/net/tcp{,6}. A bind
/// probe cannot tell: sockets of an earlier run in TIME_WAIT make it fail, while a live
/// SO_REUSEPORT listener of the same user would let it succeed.
fn listening_on(addr: std::net::SocketAddr) -> bool {
    const LISTEN_STATE: &str = "0A";
    let port = format!("{:04X}", addr.port());
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(3) == Some(&LISTEN_STATE)
                    && fields
                        .get(1)
                        .and_then(|local| local.rsplit_once(':'))
                        .is_some_and(|(_, p)| p == port)
            })
        })
    })
}

fn io_uring_available() -> bool {
    // SAFETY: io_uring_setup reads and writes only its params argument, 120 bytes (the size
    // of `struct io_uring_params` in every kernel ABI so far, whose unknown fields must be
    // zero), which `params` provides; it returns a new descriptor, closed here at once, or
    // fails. Nothing is mapped, so nothing outlives the call.
    unsafe {
        let mut params = [0u8; 120];
        let fd = libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr());
        if fd < 0 {
            return false;
        }
        libc::close(fd as i32);
        true
    }
}

async fn run_shard(
    config: Arc<ServerConfig>,
    builder: mesh::Builder<ShardRequest>,
    shutdown: Arc<AtomicBool>,
    start_failed: Arc<AtomicBool>,
    drained_shards: Arc<AtomicUsize>,
    admission: Arc<Admission>,
) -> anyhow::Result<()> {
    // Recovery can take long, and a shard can fail while the others wait for it: the start is
    // abandoned at a signal or at another shard's failure, so it never hangs.
    let started = futures_lite::future::or(
        async { Some(start_shard(Arc::clone(&config), builder).await) },
        async {
            while !shutdown.load(Ordering::Relaxed) && !start_failed.load(Ordering::Relaxed) {
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
            None
        },
    )
    .await;
    let (shard, store, listener, cache_for_views) = match started {
        Some(Ok(started)) => started,
        Some(Err(error)) => {
            start_failed.store(true, Ordering::Relaxed);
            return Err(error);
        }
        // The failed shard reports its own error; a signal is a clean stop.
        None => return Ok(()),
    };
    let id = shard.id;

    let stop = Rc::new(StopSignal::default());
    crate::runtime::spawn_local(watch_shutdown(
        Rc::clone(&shard),
        [shutdown, start_failed],
        Rc::clone(&stop),
    ))
    .detach();
    crate::runtime::spawn_local(crate::admin::shard_view::publish_until_stopped(
        Rc::clone(&shard),
        Rc::clone(&cache_for_views),
        Rc::clone(&stop),
    ))
    .detach();

    crate::runtime::spawn_local(close_log::flush_until_stopped(id, Rc::clone(&stop))).detach();

    let limits = ConnectionLimits {
        request_size_max_bytes: config.socket_request_max_bytes,
        inflight_max: config.connection_inflight_max,
        idle_max_ms: config.connections_max_idle_ms,
        request_read_timeout_ms: config.request_read_timeout_ms,
    };
    let budget = Rc::new(RequestBudget::new(config.queued_max_request_bytes));
    let live = Rc::new(Cell::new(0usize));
    let drained = Rc::new(Notify::default());
    let handler = {
        let shard = Rc::clone(&shard);
        Rc::new(move |frame, client_host| {
            let shard = Rc::clone(&shard);
            crate::metrics::requests::timed(frame, move |frame| {
                shard.handle_frame(frame, client_host)
            })
        })
    };
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::warn!(shard = id, %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(admitted) = admission::admit_stream(&admission, &stream) else {
            continue; // Refused: dropping the stream closes it.
        };
        live.set(live.get() + 1);
        crate::metrics::connection_opened();
        let (live, drained, handler, stop, budget) = (
            Rc::clone(&live),
            Rc::clone(&drained),
            Rc::clone(&handler),
            Rc::clone(&stop),
            Rc::clone(&budget),
        );
        crate::runtime::spawn_local(async move {
            connection::serve(stream, limits, budget, handler, stop).await;
            drop(admitted);
            crate::metrics::connection_closed();
            live.set(live.get() - 1);
            drained.notify_all();
        })
        .detach();
    }
    crate::metrics::readiness().set_listening(id, false);
    listener.close();
    // Members blocked in JoinGroup or SyncGroup would hold the drain for their rebalance
    // timeout: answer them now, so their clients look for the coordinator again.
    shard.close_groups();
    // Connections stop reading at the stop signal; what is in flight finishes and is answered.
    let _ = glommio::timer::timeout(DRAIN_TIMEOUT, async {
        drained.wait_for(|| (live.get() == 0).then_some(())).await;
        Ok(())
    })
    .await;
    // Other shards' last requests may still need this shard's partitions (a long-poll fetch
    // waiting here for data): keep serving the mesh until every shard has drained.
    drained_shards.fetch_add(1, Ordering::AcqRel);
    let _ = glommio::timer::timeout(DRAIN_TIMEOUT, async {
        while drained_shards.load(Ordering::Acquire) < config.shard_count {
            glommio::timer::sleep(DRAIN_BARRIER_POLL).await;
        }
        Ok(())
    })
    .await;
    shard.close_partitions().await;
    if let Some(store) = &store {
        store.close().await?;
    }
    tracing::debug!(shard = id, "stopped");
    Ok(())
}

/// A started shard: its state, shard 0's metadata store, its bound listener, and its cache for
/// the admin views.
type StartedShard = (
    Rc<Shard>,
    Option<Rc<MetadataStore>>,
    ShardListener,
    Rc<BatchCache>,
);

/// Joins the mesh, recovers the shard's partitions (shard 0 first opens the metadata) and
/// binds the Kafka port.
async fn start_shard(
    config: Arc<ServerConfig>,
    builder: mesh::Builder<ShardRequest>,
) -> anyhow::Result<StartedShard> {
    let (mesh, receivers) = Mesh::join(builder).await?;
    let id = mesh.shard_id();
    crate::metrics::bind_shard(id);
    let cache = Rc::new(BatchCache::new(config.batch_cache_bytes_per_shard));
    let cache_for_views = Rc::clone(&cache);
    let space = Rc::new(SpaceGuard::for_dir(
        &config.data_dir,
        config.disk_free_threshold_bytes,
    ));
    file::prime_device(&config.data_dir).await?;
    let store = if id == 0 {
        crate::cluster::partition_dirs::remove_interrupted_deletions(&config.data_dir).await?;
        if config.ballast_bytes > 0 {
            file::ensure_ballast(&config.data_dir.join("ballast"), config.ballast_bytes).await?;
        }
        let store = MetadataStore::open(
            &config.data_dir,
            config.node_id,
            config.shard_count as u32,
            Rc::clone(&cache),
            Rc::clone(&space),
        )
        .await
        .context("opening cluster metadata")?;
        store
            .set_default_partition_count(config.num_partitions)
            .context("num_partitions")?;
        Some(store)
    } else {
        None
    };
    let initial = store
        .as_ref()
        .map(|s| s.snapshot())
        .unwrap_or_else(|| Arc::new(ClusterMetadata::default()));
    let shard = Shard::new(
        Arc::clone(&config),
        mesh,
        store.clone(),
        cache,
        space,
        Arc::clone(&initial),
    );
    shard.serve_mesh(receivers);
    shard.start_group_timers();
    if id == 0 {
        shard.broadcast_metadata(initial).await;
    }
    shard.wait_ready().await;
    crate::metrics::readiness().set_recovered(id);

    let listener = ShardListener::bind(config.kafka_addr)
        .map_err(|e| anyhow::anyhow!("shard {id} cannot listen on {}: {e}", config.kafka_addr))?;
    tracing::debug!(shard = id, "listening");
    crate::metrics::readiness().set_listening(id, true);
    Ok((shard, store, listener, cache_for_views))
}

/// Housekeeping every second until the shutdown flag is raised, or another shard failed to
/// start; then raises the stop signal.
async fn watch_shutdown(shard: Rc<Shard>, flags: [Arc<AtomicBool>; 2], stop: Rc<StopSignal>) {
    let mut since_tick = Duration::ZERO;
    let mut since_retention = Duration::ZERO;
    let retention_interval = Duration::from_millis(shard.config.retention_check_interval_ms);
    while !flags.iter().any(|flag| flag.load(Ordering::Relaxed)) {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
        since_tick += SHUTDOWN_POLL;
        since_retention += SHUTDOWN_POLL;
        if since_tick >= HOUSEKEEPING_INTERVAL {
            since_tick = Duration::ZERO;
            let check_retention = since_retention >= retention_interval;
            if check_retention {
                since_retention = Duration::ZERO;
            }
            shard.tick(check_retention).await;
        }
    }
    tracing::info!(shard = shard.id, "shutting down");
    stop.raise();
}
