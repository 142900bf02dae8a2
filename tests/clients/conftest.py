"""The `broker` fixture: the real `ringlog serve` binary on free ports with a fresh data directory.

The binary comes from $RINGLOG_BIN (scripts/client-tests.sh builds it and sets it). Each test gets
its own broker, started with `--smp 2`, ready once its Kafka port answers a real ApiVersions
request. Its stdout and stderr go to broker.log in the test's temporary directory; the tail of
that log is attached to the report of a failing test.

A test module that needs broker settings (e.g. a `[group]` table) overrides the `broker_config`
fixture to return TOML text; the broker is then started with `--config TMP/ringlog.toml`.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import wire

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
LOG_TAIL_LINES = 60


class BrokerError(Exception):
    """The broker could not be started or stopped as the test needs."""


def free_ports(count):
    """Ports the kernel hands out as free right now (held together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def broker_binary():
    path = os.environ.get("RINGLOG_BIN")
    if not path:
        raise BrokerError(
            "RINGLOG_BIN is not set: run ./scripts/client-tests.sh (which builds the broker), "
            "or set RINGLOG_BIN=/path/to/ringlog")
    path = os.path.abspath(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise BrokerError(
            f"RINGLOG_BIN={path} is not an executable file: build it with "
            "`cargo build --release --bin ringlog`")
    return path


class Broker:
    """One broker process at a time on fixed ports and a fixed data directory."""

    def __init__(self, binary, workdir, config_toml=None):
        self.binary = binary
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "broker.log"
        self.config_path = None
        if config_toml is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.config_path = self.workdir / "ringlog.toml"
            self.config_path.write_text(config_toml)
        self.kafka_port, self.admin_port = free_ports(2)
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.kafka_port}"
        self.admin_addr = f"{self.host}:{self.admin_port}"
        self.proc = None
        self.starts = 0
        self.died_before_stop = False

    def command(self):
        cmd = [self.binary, "serve",
               "--data-dir", str(self.data_dir),
               "--kafka-addr", self.bootstrap,
               "--admin-addr", self.admin_addr,
               "--smp", "2"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        level = os.environ.get("RINGLOG_TEST_LOG_LEVEL")
        if level:
            cmd += ["--log-level", level]
        return cmd

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if self.proc is not None:
            raise BrokerError("start(): the broker is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "RUST_BACKTRACE": "1"})
        try:
            self.wait_ready()
        except BaseException:
            self.kill_quietly()
            raise

    def wait_ready(self):
        """Until the Kafka port answers ApiVersions v0 with no error, for READY_TIMEOUT_S."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_problem = "no attempt"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BrokerError(
                    f"ringlog exited with code {code} before answering ApiVersions on "
                    f"{self.bootstrap}\ncommand: {' '.join(self.command())}\n"
                    f"output:\n{self.log_tail()}")
            try:
                response = wire.api_versions(self.host, self.kafka_port, version=0,
                                             correlation_id=7, timeout_s=2)
                if response.correlation_id == 7 and response.error_code == 0:
                    return
                last_problem = f"unexpected answer {response!r}"
            except (OSError, ValueError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise BrokerError(
            f"ringlog did not answer ApiVersions v0 on {self.bootstrap} within "
            f"{READY_TIMEOUT_S} s (last attempt: {last_problem})\n"
            f"command: {' '.join(self.command())}\noutput:\n{self.log_tail()}")

    def stop(self):
        """SIGTERM, wait up to STOP_TIMEOUT_S (then SIGKILL and fail); returns the exit code."""
        if self.proc is None:
            raise BrokerError("stop(): the broker is not running")
        proc = self.proc
        self.died_before_stop = proc.poll() is not None
        if not self.died_before_stop:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.proc = None
            raise BrokerError(
                f"ringlog did not exit within {STOP_TIMEOUT_S} s of SIGTERM; killed it\n"
                f"output:\n{self.log_tail()}")
        self.proc = None
        return code

    def restart(self):
        """Clean stop (SIGTERM must give exit code 0), then start on the same ports and data."""
        code = self.stop()
        if code != 0:
            when = "before restart()" if self.died_before_stop else "after SIGTERM"
            raise BrokerError(
                f"ringlog exited with code {code} {when}, expected 0 after SIGTERM\n"
                f"output:\n{self.log_tail()}")
        self.start()

    def kill9(self):
        """SIGKILL: a crash. start() brings it back on the same ports and data."""
        if self.proc is None:
            raise BrokerError("kill9(): the broker is not running")
        self.proc.kill()
        code = self.proc.wait()
        self.proc = None
        return code

    def kill_quietly(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def leftover_pids(self):
        """Processes still running from any start of this broker (found by its data dir)."""
        marker = str(self.data_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in cmdline.split(b"\0") and state != "Z":
                found.append(int(entry.name))
        return found

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no output)"


@pytest.fixture
def broker_config():
    """TOML text for `--config`, or None for none; a test module overrides this fixture."""
    return None


@pytest.fixture
def broker(tmp_path, broker_config):
    problem = None
    try:
        instance = Broker(broker_binary(), tmp_path, broker_config)
        instance.start()
    except BrokerError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)
    yield instance
    try:
        if instance.proc is not None:
            code = instance.stop()
            when = "before teardown" if instance.died_before_stop else "after SIGTERM at teardown"
            assert code == 0, (
                f"ringlog exited with code {code} {when}, expected 0 after SIGTERM\n"
                f"output:\n{instance.log_tail()}")
    finally:
        leftovers = instance.leftover_pids()
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"ringlog processes left running after teardown: {leftovers}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    instance = getattr(item, "funcargs", {}).get("broker")
    if report.failed and isinstance(instance, Broker):
        report.sections.append(
            (f"ringlog output (last {LOG_TAIL_LINES} lines of {instance.log_path})",
             instance.log_tail()))
