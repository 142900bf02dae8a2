//! Start-up problems end `ringlog serve` with exit code 1 and one line saying what to do, never
//! a backtrace.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

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
