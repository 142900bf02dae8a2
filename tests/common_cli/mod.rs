//! Helpers for tests that run the `ringlog` command-line tools as processes against a broker
//! started by `common_kafka::Broker`: every run has a time limit (the child is killed past
//! it, so a hung tool fails the test instead of hanging it), and background tools are killed
//! when their guard drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest any one tool may run before the test gives up on it; far above what any should
/// take, so it guards against hangs without asserting on time.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// What a finished tool left behind.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with everything the tool printed unless it exited 0.
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "ringlog exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout_text(),
            self.stderr
        );
        self
    }
}

/// `ringlog ARGS` talking to `brokers` (through `RINGLOG_BROKERS`), with `stdin` as input.
pub fn ringlog(brokers: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = command(brokers, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringlog starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A tool that exits early closes its stdin; that is its business, not the test's.
        let _ = input.write_all(&stdin);
    });
    let run = finish(child, args);
    let _ = writer.join();
    run
}

/// `ringlog ARGS` with its stdout a pipe that nobody reads, closed before the tool writes to
/// it, as `ringlog ... | head -1` leaves it once `head` has its line.
pub fn ringlog_into_closed_pipe(brokers: &str, args: &[&str]) -> Run {
    let mut child = command(brokers, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringlog starts");
    drop(child.stdout.take());
    finish(child, args)
}

/// Waits for `child` to exit, at most `RUN_LIMIT`, collecting what it printed.
fn finish(child: Child, args: &[&str]) -> Run {
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(RUN_LIMIT) {
        Ok(output) => output.expect("ringlog runs"),
        Err(_) => {
            // SAFETY: kill(2) on a child of this process that has not been reaped (the
            // waiting thread is still blocked in wait).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("ringlog {args:?} did not finish within {RUN_LIMIT:?}");
        }
    };
    Run {
        status: output.status,
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn command(brokers: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringlog"));
    command
        .args(args)
        .env("RINGLOG_BROKERS", brokers)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    command
}

/// A tool left running in the background; SIGTERM when dropped (SIGKILL if it lingers).
pub struct Background {
    child: Option<Child>,
}

impl Background {
    pub fn start(brokers: &str, args: &[&str]) -> Background {
        let child = command(brokers, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringlog starts");
        Background { child: Some(child) }
    }

    /// SIGTERM, then the exit status and stderr (SIGKILL after `RUN_LIMIT`).
    pub fn stop(mut self) -> (ExitStatus, String) {
        let child = self.child.take().expect("running");
        stop(child)
    }
}

fn stop(mut child: Child) -> (ExitStatus, String) {
    // SAFETY: kill(2) on a child of this process that has not been reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("ringlog exits");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

/// A tool whose stdin the test keeps open and feeds, and whose stderr it reads as it comes,
/// for tests that signal a tool in the middle of its input; SIGKILL when dropped.
pub struct Fed {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr_lines: mpsc::Receiver<String>,
    stderr: String,
}

impl Fed {
    pub fn start(brokers: &str, args: &[&str]) -> Fed {
        let mut child = command(brokers, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringlog starts");
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Fed {
            child: Some(child),
            stdin,
            stderr_lines,
            stderr: String::new(),
        }
    }

    /// Writes `bytes` to the tool's stdin in one write, which leaves it open.
    pub fn feed(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).expect("the tool reads its stdin");
        stdin.flush().expect("the tool reads its stdin");
    }

    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on a child of this process that has not been reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }

    /// Waits for a line of stderr containing `text`; panics with what came instead when the
    /// tool closes stderr first or `RUN_LIMIT` passes.
    pub fn wait_for_stderr(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + RUN_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                    if line.contains(text) {
                        return;
                    }
                }
                Err(_) => panic!("never printed '{text}'; stderr:\n{}", self.stderr),
            }
        }
    }

    /// Waits for the tool to exit (SIGKILL and a panic past `RUN_LIMIT`); its status and all
    /// it wrote to stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringlog did not exit within {RUN_LIMIT:?}:\n{}",
                    self.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes with the process, so this ends.
        while let Ok(line) = self.stderr_lines.recv_timeout(RUN_LIMIT) {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
        }
        (status, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Retries `check` until it returns `Some`, for state that settles asynchronously (a
/// consumer joining its group); panics with `what` when it never does.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
