//! Start-up problems end `ringlog serve` with exit code 1 and one line saying what to do, never
//! a backtrace.

mod common_kafka;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common_kafka::Broker;

/// How long a start-up that must fail may take before the test calls it a hang.
const START_FAILURE_DEADLINE: Duration = Duration::from_secs(60);

fn serve(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringlog"))
        .arg("serve")
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run ringlog");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `ringlog serve` and waits for it to exit, killing it past `START_FAILURE_DEADLINE`;
/// `None` as the code when it had to be killed.
fn serve_or_kill(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringlog"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("run ringlog");
    let deadline = Instant::now() + START_FAILURE_DEADLINE;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        code,
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    )
}

/// `serve_or_kill` on `data_dir`, with the Kafka listener on `kafka_port` and admin on a free
/// port.
fn serve_on(data_dir: &std::path::Path, kafka_port: u16) -> (Option<i32>, String) {
    serve_or_kill(&[
        "--kafka-addr",
        &format!("127.0.0.1:{kafka_port}"),
        "--admin-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_one_clear_line(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{stderr}");
    assert!(
        lines[0].starts_with("ringlog: ") && lines[0].contains(needle),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn a_taken_port_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (code, stderr) = serve(&[
        "--kafka-addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&stderr, "already in use");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn an_unusable_data_directory_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stderr) = serve(&[
        "--kafka-addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        file.join("data").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&stderr, "--data-dir");
}

#[test]
fn a_bad_flag_is_one_clear_line() {
    let (code, stderr) = serve(&["--smp", "0"]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&stderr, "--smp");
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let broker = Broker::start();
    let (code, stderr) = serve_on(&broker.data_dir(), free_port());
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_clear_line(&stderr, "in use by another ringlog process");
}

/// The first broker has not bound the port yet while it starts; the second must not join it
/// once it does (SO_REUSEPORT would let it take half the connections).
#[test]
fn a_second_broker_on_the_same_port_is_refused_while_the_first_starts() {
    let mut first = Broker::launch_with(&[]);
    // The admin endpoint comes up once the first broker's start-up checks passed, before it
    // recovers anything or binds the Kafka port.
    let deadline = Instant::now() + START_FAILURE_DEADLINE;
    while common_kafka::http_get(first.admin_addr, "/v1/health").is_err() {
        assert!(Instant::now() < deadline, "{}", first.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let other_data = tempfile::tempdir().unwrap();
    let (code, stderr) = serve_on(&other_data.path().join("data"), first.kafka_addr.port());
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_clear_line(&stderr, "already in use");
    first.wait_ready();
}

/// Partitions without the metadata that names them: the broker must say so and exit, not wait
/// forever for metadata that never comes (and must not start an empty cluster over them).
#[test]
fn a_missing_metadata_log_beside_partitions_ends_start_up_with_one_line() {
    let mut broker = Broker::start();
    let mut client = broker.client();
    common_kafka::create_topic(&mut client, "kept", 2);
    let (error_code, _) = common_kafka::produce_batch(&mut client, "kept", 0, 10, -1);
    assert_eq!(error_code, 0);
    drop(client);
    assert!(broker.stop().is_some_and(|s| s.success()));
    let data_dir = broker.data_dir();
    std::fs::remove_dir_all(data_dir.join("__cluster_metadata-0")).unwrap();
    let (code, stderr) = serve_on(&data_dir, free_port());
    assert_eq!(code, Some(1), "start-up must end, not hang:\n{stderr}");
    assert_one_clear_line(&stderr, "kept-0");
    assert!(data_dir
        .join("kept-0")
        .join("00000000000000000000.log")
        .exists());
}
