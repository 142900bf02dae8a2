//! A really full disk, on a small ext4 filesystem mounted from a loop device: appends fail with
//! a typed storage error, the log stays consistent and readable, and writes resume by
//! themselves once space returns, both when the disk truly fills and when the free-space
//! threshold refuses writes first (with the ballast file as the emergency reserve).
//!
//! Needs root for the loop mount, as CI has; elsewhere the test says so and does nothing.

mod common;
mod common_kafka;

use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use ringlog::storage::{file, BatchCache, LogConfig, PartitionLog, SpaceGuard, StorageError};

const IMAGE_SIZE_BYTES: u64 = 64 * 1024 * 1024;

struct LoopMount {
    mount_point: PathBuf,
    _tmp: tempfile::TempDir,
}

impl LoopMount {
    fn new() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(IMAGE_SIZE_BYTES)
            .unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .status();
        if !mkfs.is_ok_and(|s| s.success()) {
            return None;
        }
        let mount_point = tmp.path().join("mnt");
        std::fs::create_dir(&mount_point).unwrap();
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount_point)
            .status();
        if !mounted.is_ok_and(|s| s.success()) {
            return None;
        }
        Some(LoopMount {
            mount_point,
            _tmp: tmp,
        })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // Lazy, so that a test that failed with files still open does not leave the mount.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024 * 1024,
        preallocate_bytes: 2 * 1024 * 1024,
        ..LogConfig::default()
    }
}

fn with_loop_mount(test: impl FnOnce(PathBuf) + Send + 'static) {
    let Some(mount) = LoopMount::new() else {
        println!("skipped: needs root, mkfs.ext4 and loop devices to fill a real disk");
        return;
    };
    test(mount.mount_point.clone());
}

/// Appends 64 KiB batches durably until an append fails; returns the acknowledged batches and
/// the error.
async fn fill(log: &Rc<PartitionLog>, space: Option<&SpaceGuard>) -> (Vec<Vec<u8>>, StorageError) {
    let mut acknowledged = Vec::new();
    for i in 0..10_000u64 {
        if let Some(space) = space {
            space.refresh(Duration::ZERO).await.unwrap();
        }
        let bytes = make_batch(i, 4, 64 * 1024, i as i64);
        match log.append(BytesMut::from(&bytes[..]), 0).await {
            Ok(info) => match log.wait_durable(info.last_offset + 1).await {
                Ok(()) => {
                    log.set_high_watermark(log.log_end_offset());
                    acknowledged.push(assigned(&bytes, info.base_offset, 0));
                }
                Err(error) => return (acknowledged, error),
            },
            Err(error) => return (acknowledged, error),
        }
    }
    panic!("a 64 MiB filesystem never filled up");
}

#[test]
fn a_truly_full_disk_fails_appends_cleanly_and_recovers() {
    with_loop_mount(|mount| {
        run(move || async move {
            let dir = mount.join("t-0");
            let log = open_uncached(&dir, config()).await;
            let (acknowledged, error) = fill(&log, None).await;
            assert!(error.is_storage_failure(), "{error}");
            assert!(matches!(error, StorageError::NoSpace { .. }), "{error}");
            assert!(acknowledged.len() > 100);
            // A failed fallocate keeps what it got (ext4) and grows the file over it; the
            // log cuts that back, so the active segment ends on a whole step.
            let active_base = *log.segment_base_offsets().last().unwrap();
            let active_len = std::fs::metadata(dir.join(format!("{active_base:020}.log")))
                .unwrap()
                .len();
            assert_eq!(
                active_len % config().preallocate_bytes,
                0,
                "{active_len} bytes: nothing partly reserved is kept"
            );
            let end = log.log_end_offset();
            assert_eq!(
                end,
                acknowledged.len() as i64 * 4,
                "a refused append leaves no trace"
            );
            // Reads keep working on the full disk.
            assert_batches_eq(
                &read_all(&log, 0, 1 << 20).await,
                &acknowledged,
                "full disk",
            );

            // Space returns: appends resume without a restart.
            let victim = dir.join(format!("{:020}.log", 0));
            let freed = std::fs::metadata(&victim).unwrap().len();
            log.set_high_watermark(end);
            let mut retention = log.config();
            retention.retention_bytes = Some(1);
            retention.retention_ms = None;
            log.set_config(retention);
            log.enforce_retention(ringlog::storage::now_ms())
                .await
                .unwrap();
            assert!(
                !victim.exists() && freed > 0,
                "retention freed the oldest segment"
            );
            let next = make_batch(99_999, 1, 1000, 1);
            let info = log
                .append(BytesMut::from(&next[..]), 0)
                .await
                .expect("append after space returned");
            assert_eq!(info.base_offset, end);
            log.close().await.unwrap();
            drop(log);
            let log = open_uncached(&dir, config()).await;
            assert_eq!(log.log_end_offset(), end + 1);
        });
    });
}

#[test]
fn the_free_space_threshold_refuses_writes_first_and_the_ballast_buys_room() {
    with_loop_mount(|mount| {
        run(move || async move {
            let dir = mount.join("t-0");
            file::prime_device(&mount).await.unwrap();
            let ballast = mount.join("ballast");
            file::ensure_ballast(&ballast, 16 * 1024 * 1024)
                .await
                .unwrap();
            let threshold_bytes = 12 * 1024 * 1024;
            let space = Rc::new(SpaceGuard::for_dir(&mount, threshold_bytes));
            let (log, _) = PartitionLog::open(
                &dir,
                config(),
                Rc::new(BatchCache::new(0)),
                Rc::clone(&space),
            )
            .await
            .unwrap();
            let (acknowledged, error) = fill(&log, Some(&space)).await;
            match error {
                StorageError::DiskFull {
                    free_bytes,
                    threshold_bytes: t,
                } => {
                    assert_eq!(t, threshold_bytes);
                    assert!(
                        free_bytes < threshold_bytes && free_bytes > 0,
                        "refused before really full"
                    );
                }
                other => panic!("expected the threshold to refuse, got {other}"),
            }
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &acknowledged, "refused");

            // The operator deletes the ballast; writes resume once the guard sees the space.
            std::fs::remove_file(&ballast).unwrap();
            space.refresh(Duration::ZERO).await.unwrap();
            let next = make_batch(77, 1, 1000, 1);
            log.append(BytesMut::from(&next[..]), 0)
                .await
                .expect("append after the ballast went");
        });
    });
}

#[test]
fn a_group_commit_that_runs_out_of_space_fails_its_waiters() {
    with_loop_mount(|mount| {
        run(move || async move {
            let dir = mount.join("t-0");
            let log = open_uncached(&dir, config()).await;
            // Appended but not yet committed: the log's blocks are reserved, while the index
            // entries (one per 32 KiB, after the first batch) and the index files' blocks
            // wait for the commit.
            let mut expected = Vec::new();
            let mut last_offset = 0;
            for i in 0..4u64 {
                let bytes = make_batch(i, 4, 64 * 1024, 1);
                let info = log.append(BytesMut::from(&bytes[..]), 0).await.unwrap();
                expected.push(assigned(&bytes, info.base_offset, 0));
                last_offset = info.last_offset;
            }

            // Everything else on the filesystem goes to another file.
            let filler = mount.join("filler");
            {
                use std::io::Write;
                let mut file = std::fs::File::create(&filler).unwrap();
                let block = vec![0x5au8; 64 * 1024];
                while file.write_all(&block).is_ok() {}
                while file.write_all(&block[..4096]).is_ok() {}
                let _ = file.sync_all();
            }

            // The commit cannot reserve the index file: its waiter gets the typed error
            // instead of waiting for a commit nobody retries.
            let error = log
                .wait_durable(last_offset + 1)
                .await
                .expect_err("no space for the index");
            assert!(matches!(error, StorageError::NoSpace { .. }), "{error}");

            // Space returns: the next request commits.
            std::fs::remove_file(&filler).unwrap();
            log.wait_durable(last_offset + 1)
                .await
                .expect("commit after space returned");
            log.close().await.unwrap();
            drop(log);
            let log = open_uncached(&dir, config()).await;
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "after reopen");
        });
    });
}

/// Fills the filesystem at `dir` to the last block.
fn fill_disk(dir: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("fill")).unwrap();
    for chunk_bytes in [1024 * 1024, 4096, 512] {
        let chunk = vec![0u8; chunk_bytes];
        while file.write_all(&chunk).is_ok() {}
    }
    let _ = file.sync_all();
}

/// A broker whose disk filled while it was down starts, serves reads and refuses produce
/// with KAFKA_STORAGE_ERROR, says so once in its log, and takes produce again once space
/// returns, as it does when the disk fills while it runs.
#[test]
fn a_broker_on_a_full_disk_starts_serves_reads_and_refuses_produce() {
    with_loop_mount(|mount_point| {
        let config = mount_point.join("ringlog.toml");
        std::fs::write(
            &config,
            "disk_free_threshold_bytes = 1048576\nballast_bytes = 0\n",
        )
        .unwrap();
        let data_dir = mount_point.join("data");
        // Off the full disk, so that every line of it is kept.
        let log_dir = tempfile::tempdir().unwrap();
        let log_path = log_dir.path().join("broker.log");
        let [kafka_port, admin_port] = common_kafka::free_ports();
        let kafka_addr: std::net::SocketAddr = format!("127.0.0.1:{kafka_port}").parse().unwrap();
        let serve_logging_to = |log_path: &std::path::Path| {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .unwrap();
            ServedBroker(
                Command::new(env!("CARGO_BIN_EXE_ringlog"))
                    .arg("serve")
                    .arg("--config")
                    .arg(&config)
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .args(["--kafka-addr", &kafka_addr.to_string()])
                    .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
                    .args(["--smp", "2"])
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        };
        let serve = || serve_logging_to(&log_path);
        let broker_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let mut broker = serve();
        let mut client = broker.connect(kafka_addr, &broker_log);
        common_kafka::create_topic(&mut client, "kept", 1);
        assert_eq!(
            common_kafka::produce_batch(&mut client, "kept", 0, 10, -1).0,
            0
        );
        drop(client);
        broker.stop();

        fill_disk(&mount_point);
        let mut broker = serve();
        let mut client = broker.connect(kafka_addr, &broker_log);
        assert_eq!(
            common_kafka::list_offset(&mut client, "kept", 0, -1),
            (0, 10)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let refused = loop {
            let code = common_kafka::produce_batch(&mut client, "kept", 0, 1, -1).0;
            if code != 0 || std::time::Instant::now() > deadline {
                break code;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(refused, 56, "KAFKA_STORAGE_ERROR:\n{}", broker_log());
        assert!(
            broker_log().contains("produce is refused"),
            "{}",
            broker_log()
        );
        drop(client);
        broker.stop();

        // Its log on the full disk too: lines are lost, the broker is not.
        let full_log = mount_point.join("broker-on-full-disk.log");
        let mut broker = serve_logging_to(&full_log);
        let mut client = broker.connect(kafka_addr, &broker_log);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while common_kafka::produce_batch(&mut client, "kept", 0, 1, -1).0 == 0 {
            assert!(std::time::Instant::now() < deadline, "never refused");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(common_kafka::list_offset(&mut client, "kept", 0, -1).0, 0);
        drop(client);
        assert!(
            broker.stop().is_some_and(|s| s.success()),
            "it died writing its log"
        );
        let mut broker = serve();
        let mut client = broker.connect(kafka_addr, &broker_log);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while common_kafka::produce_batch(&mut client, "kept", 0, 1, -1).0 == 0 {
            assert!(std::time::Instant::now() < deadline, "never refused");
            std::thread::sleep(Duration::from_millis(100));
        }

        std::fs::remove_file(mount_point.join("fill")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while common_kafka::produce_batch(&mut client, "kept", 0, 1, -1).0 != 0 {
            assert!(std::time::Instant::now() < deadline, "{}", broker_log());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            broker_log().contains("produce is accepted again"),
            "{}",
            broker_log()
        );
        drop(client);
        broker.stop();
    });
}

/// A `ringlog serve` process, stopped (SIGTERM, then SIGKILL) when dropped.
struct ServedBroker(std::process::Child);

impl ServedBroker {
    /// Connects once the broker answers ApiVersions; panics with its log if it exits first.
    fn connect(
        &mut self,
        addr: std::net::SocketAddr,
        log: &dyn Fn() -> String,
    ) -> common_kafka::Client {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                panic!("ringlog exited at start-up with {status}:\n{}", log());
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return common_kafka::Client::connect(addr);
            }
            assert!(std::time::Instant::now() < deadline, "{}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL past 20 s; the exit status when it stopped by itself.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServedBroker {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.stop();
        }
    }
}
