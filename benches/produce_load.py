"""Produce throughput of a real `ringlog serve` under a librdkafka (confluent-kafka) load.

What it measures
----------------
For every case (message size x partition count x acks), N producer processes (multiprocessing,
default 2: one Python process cannot feed librdkafka fast enough on its own) send a fixed number
of messages, as fast as they can, to a fresh topic of that partition count, and wait for every
delivery report. Per case it reports:

- msgs/s and MB/s: messages (payload bytes, MB = 10^6) over the wall time from the first
  produce() of any process to the last delivery report of any process;
- broker CPU s per million messages: utime+stime of the broker process (all its threads, from
  /proc/<pid>/stat) between "go" and the last process finishing, scaled to 10^6 messages. On a
  machine that the broker and the load share, this is the comparable figure: msgs/s is bounded
  by the shared CPUs;
- the load's own CPU (utime+stime of the producer processes, librdkafka threads included, over
  their produce-to-last-report window), and both CPU figures as % of one CPU, so that a reader
  sees whether the client or the machine was the bottleneck.

A case fails if any delivery report carries an error, if a process does not finish within the
time limit, or if the topic's end offsets do not add up to the messages sent.

How
---
The script starts its own broker (target/release/ringlog, or $RINGLOG_BIN) with `--smp 2` on free
ports and a fresh data directory under $RINGLOG_BENCH_DIR (default target/bench-tmp, on the
filesystem of the build, refused if it is a tmpfs), creates one topic per case with
confluent_kafka.admin, and runs the cases one after the other. Each producer process: Producer
with linger.ms=5, batch.size=1000000, batch.num.messages=100000, compression none, a large
queue.buffering.max.messages, acks as the case says, enable.idempotence=false for acks=1 and
true for acks=all (as a Java producer's defaults), no keys (librdkafka's default partitioner then
spreads batches over the partitions). Before the clock starts, each process connects, sends a
few warm-up messages and waits for them, so connection set-up and InitProducerId are not timed.
At the end (and on any error or Ctrl-C) the broker gets SIGTERM and the data directory is
deleted; the broker's log is kept and its path printed only when something went wrong.

Run it with benches/produce_load.sh, which builds the broker and the client virtualenv first.
"""

import argparse
import json
import multiprocessing
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SIZES = (100, 1024)
PARTITIONS = (1, 8)
ACKS = ("1", "all")
# Messages per case (all processes together), sized for about 10 s per case on a 2-CPU virtual
# machine shared with the broker. --messages overrides them for every size.
DEFAULT_MESSAGES = {100: 12_000_000, 1024: 4_000_000}
DEFAULT_PROCS = 2
WARMUP_MESSAGES = 100  # per process, before the clock starts

BROKER_SMP = 2
BROKER_SOURCES = ("src", "vendor", "Cargo.toml", "Cargo.lock")  # what the binary is built from
BROKER_READY_TIMEOUT_S = 30
BROKER_STOP_TIMEOUT_S = 20
ADMIN_TIMEOUT_S = 30
WORKER_READY_TIMEOUT_S = 60
IDLE_SAMPLE_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot go on (the broker did not start, a topic was not created...)."""


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def filesystem_of(path):
    """(mount point, filesystem type, source) of the mount holding `path`, from mountinfo."""
    path = os.path.realpath(path)
    best = ("/", "unknown", "unknown")
    best_len = -1
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        mount_point = left.split()[4].replace("\\040", " ")
        fstype, source = right.split()[:2]
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best_len:
            best, best_len = (mount_point, fstype, source), len(mount_point)
    return best


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10, check=True).stdout
        # Only the broker's build inputs count: edits to benches or docs do not change it.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *BROKER_SOURCES], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=10, check=True).stdout
        return rev.strip() + (" with uncommitted changes to the broker's sources"
                              if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(data_root, procs):
    mount_point, fstype, source = filesystem_of(data_root)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "data_filesystem": {"mount_point": mount_point, "type": fstype, "source": source},
        "git": git_revision(),
        "broker_smp": BROKER_SMP,
        "producer_processes": procs,
    }


# ---------------------------------------------------------------------------------------------
# The broker


def free_ports(count):
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


def process_cpu_seconds(pid):
    """utime + stime of a whole process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" of comm, fields start at number 3 (state); utime and stime are 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds():
    """CPU seconds all CPUs spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def term_when_parent_dies():
    """In a child process (the broker before exec, a producer process at its start): SIGTERM
    it if this script dies, even by SIGKILL, so that nothing outlives the benchmark.

    The kernel sends the signal each time the thread that started the child exits and the child
    passes to another thread of this process, so a child can get it more than once; ringlog
    then exits at once with code 1 instead of shutting down cleanly, which is fine for a data
    directory that is thrown away."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Broker:
    """`ringlog serve --smp 2` on free ports, its data and log in a fresh directory."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "broker.log"
        kafka_port, admin_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.admin_addr = f"127.0.0.1:{admin_port}"
        self.proc = None
        self.exit_code = None

    def command(self):
        return [self.binary, "serve", "--data-dir", str(self.data_dir),
                "--kafka-addr", self.bootstrap, "--admin-addr", self.admin_addr,
                "--smp", str(BROKER_SMP)]

    def start(self):
        self.data_dir.mkdir(parents=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "RUST_BACKTRACE": "1"},
                                         preexec_fn=term_when_parent_dies)

    def wait_ready(self, admin_client_class):
        """Until the Kafka port accepts connections and answers a metadata request through
        librdkafka, for BROKER_READY_TIMEOUT_S. Returns the admin client."""
        host, port = self.bootstrap.rsplit(":", 1)
        deadline = time.monotonic() + BROKER_READY_TIMEOUT_S
        last_problem = "no attempt"
        while time.monotonic() < deadline:
            self.check_alive("before accepting connections")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError as exc:
                last_problem = str(exc)
            time.sleep(0.1)
        else:
            raise BenchError(f"the broker did not accept connections on {self.bootstrap} "
                             f"within {BROKER_READY_TIMEOUT_S} s ({last_problem})\n"
                             f"{self.log_tail()}")
        admin = admin_client_class({"bootstrap.servers": self.bootstrap})
        try:
            admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # KafkaException
            raise BenchError(f"the broker did not answer a metadata request on "
                             f"{self.bootstrap} within {BROKER_READY_TIMEOUT_S} s ({exc})\n"
                             f"{self.log_tail()}") from exc
        return admin

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, when):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"the broker exited with code {self.proc.returncode} {when}\n"
                             f"{self.log_tail()}")

    def cpu_seconds(self):
        return process_cpu_seconds(self.proc.pid)

    def stop(self):
        """SIGTERM, wait BROKER_STOP_TIMEOUT_S, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
            self.exit_code = f"killed: no exit within {BROKER_STOP_TIMEOUT_S} s of SIGTERM"
        self.proc = None
        return self.exit_code

    def log_lines(self):
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines=40):
        tail = self.log_lines()[-lines:]
        return f"broker log ({self.log_path}), last {len(tail)} lines:\n" + "\n".join(tail)

    def problem_lines(self):
        """Warnings, errors and panics in the broker's log (its colour codes removed)."""
        plain = (re.sub(r"\x1b\[[0-9;]*m", "", line) for line in self.log_lines())
        return [line for line in plain
                if " WARN " in line or " ERROR " in line or "panicked" in line]


# ---------------------------------------------------------------------------------------------
# The load: one producer process


def producer_config(bootstrap, acks):
    return {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "enable.idempotence": acks == "all",
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "compression.type": "none",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,  # 1 GiB, librdkafka's default
        "delivery.timeout.ms": 60_000,
    }


def producer_process(parent_pid, index, bootstrap, topic, acks, size, count, go, reports,
                     timeout_s):
    """Sends `count` messages of `size` bytes after `go` is set; reports timings and errors.

    Messages on `reports`: ("ready", index) once warmed up, then ("done", index, result) or
    ("failed", index, text).
    """
    term_when_parent_dies()
    if os.getppid() != parent_pid:  # the parent died before the line above
        return
    try:
        from confluent_kafka import Producer

        failures = []
        delivered = [0]

        def on_delivery(err, _msg):
            if err is None:
                delivered[0] += 1
            elif len(failures) < 5:
                failures.append(str(err))
            else:
                failures.append(None)  # counted, not kept

        producer = Producer({**producer_config(bootstrap, acks), "on_delivery": on_delivery})
        payload = os.urandom(size)

        # Warm-up: connections, metadata, InitProducerId (acks=all) happen outside the clock.
        for _ in range(WARMUP_MESSAGES):
            producer.produce(topic, payload)
        left = producer.flush(ADMIN_TIMEOUT_S)
        if left or failures:
            reports.put(("failed", index, f"warm-up: {left} messages without a report within "
                                          f"{ADMIN_TIMEOUT_S} s, errors: {failures[:5]}"))
            return
        delivered[0] = 0
        reports.put(("ready", index))
        if not go.wait(WORKER_READY_TIMEOUT_S):
            reports.put(("failed", index, "no go signal"))
            return

        produce, poll = producer.produce, producer.poll
        queue_full = 0
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
        for i in range(count):
            while True:
                try:
                    produce(topic, payload)
                    break
                except BufferError:  # local queue full: serve delivery reports, retry
                    queue_full += 1
                    poll(0.005)
            if i % 1000 == 0:
                poll(0)
        left = producer.flush(max(1.0, timeout_s - (time.monotonic() - t0)))
        t1 = time.monotonic()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        reports.put(("done", index, {
            "first_produce": t0,
            "last_report": t1,
            "delivered": delivered[0],
            "errors": len(failures),
            "error_samples": [f for f in failures if f is not None],
            "undelivered_at_timeout": left,
            "queue_full_waits": queue_full,
            "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        }))
    except BaseException as exc:  # report instead of dying silently
        reports.put(("failed", index, f"{type(exc).__name__}: {exc}"))


def collect(reports, procs, kind, deadline, broker):
    """Waits until every process sent a `kind` message (or a failure), until `deadline` or until
    the broker dies."""
    got, failures = {}, {}
    while len(got) + len(failures) < len(procs):
        if not broker.alive():
            missing = [i for i in range(len(procs)) if i not in got and i not in failures]
            failures.update({i: f"no '{kind}': the broker died" for i in missing})
            break
        if time.monotonic() > deadline:
            missing = [i for i in range(len(procs)) if i not in got and i not in failures]
            failures.update({i: f"no '{kind}' within the time limit" for i in missing})
            break
        try:
            message = reports.get(timeout=0.2)
        except queue.Empty:
            for i, proc in enumerate(procs):
                if proc.exitcode not in (None, 0) and i not in got and i not in failures:
                    failures[i] = f"process exited with code {proc.exitcode}"
            continue
        if message[0] == "failed":
            failures[message[1]] = message[2]
        elif message[0] == kind:
            got[message[1]] = message[2] if len(message) > 2 else True
    return got, failures


def stop_processes(procs, graceful):
    """Joins the producer processes (after a completed case) or terminates them (otherwise)."""
    if graceful:
        for proc in procs:
            proc.join(timeout=10)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Cases


def topic_name(size, partitions, acks):
    return f"load-{size}B-p{partitions}-acks{acks}"


def end_offsets(admin, topic, partitions):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    futures = admin.list_offsets(request, request_timeout=ADMIN_TIMEOUT_S)
    return [futures[tp].result(timeout=ADMIN_TIMEOUT_S).offset
            for tp in sorted(futures, key=lambda tp: tp.partition)]


def run_case(ctx, broker, admin, size, partitions, acks, messages, procs_count, case_timeout_s):
    topic = topic_name(size, partitions, acks)
    per_process = [messages // procs_count + (1 if i < messages % procs_count else 0)
                   for i in range(procs_count)]
    result = {"size": size, "partitions": partitions, "acks": acks, "messages": messages,
              "topic": topic, "processes": procs_count, "ok": False, "problems": []}
    go = ctx.Event()
    reports = ctx.Queue()
    completed = False
    procs = [ctx.Process(target=producer_process, name=f"producer-{i}",
                         args=(os.getpid(), i, broker.bootstrap, topic, acks, size,
                               per_process[i], go, reports, case_timeout_s))
             for i in range(procs_count)]
    try:
        for proc in procs:
            proc.start()
        _, failures = collect(reports, procs, "ready",
                              time.monotonic() + WORKER_READY_TIMEOUT_S, broker)
        if failures:
            result["problems"] += [f"producer {i}: {text}" for i, text in failures.items()]
            return result
        broker_cpu0, busy0, t0 = broker.cpu_seconds(), machine_busy_seconds(), time.monotonic()
        go.set()
        done, failures = collect(reports, procs, "done",
                                 time.monotonic() + case_timeout_s + 30, broker)
        broker_cpu1 = broker.cpu_seconds() if broker.alive() else None
        busy1, t1 = machine_busy_seconds(), time.monotonic()
        completed = True
    finally:
        go.set()  # a process still waiting for it must not hang
        stop_processes(procs, graceful=completed)
        reports.close()
    result["problems"] += [f"producer {i}: {text}" for i, text in failures.items()]
    if not broker.alive():
        result["problems"].append(f"the broker exited with code {broker.proc.returncode}")
    if failures or broker_cpu1 is None:
        return result

    wall = max(d["last_report"] for d in done.values()) - min(
        d["first_produce"] for d in done.values())
    delivered = sum(d["delivered"] for d in done.values())
    errors = sum(d["errors"] for d in done.values())
    undelivered = sum(d["undelivered_at_timeout"] for d in done.values())
    load_cpu = sum(d["cpu_s"] for d in done.values())
    broker_cpu = broker_cpu1 - broker_cpu0
    # Everything else that ran on the machine meanwhile (same window as the broker's CPU).
    other_cpu = max(0.0, (busy1 - busy0) - broker_cpu - load_cpu)
    try:
        offsets = end_offsets(admin, topic, partitions)
    except Exception as exc:  # KafkaException, timeout: the case cannot be checked
        result["problems"].append(f"ListOffsets of {topic} failed: {exc}")
        offsets = None
    expected_end = messages + WARMUP_MESSAGES * procs_count
    result.update({
        "wall_s": wall,
        "delivered": delivered,
        "errors": errors,
        "error_samples": [s for d in done.values() for s in d["error_samples"]],
        "msgs_per_s": messages / wall,
        "mb_per_s": messages * size / wall / 1e6,
        "broker_cpu_s": broker_cpu,
        "broker_cpu_s_per_million": broker_cpu / messages * 1e6,
        "broker_cpu_pct": 100 * broker_cpu / wall,
        "load_cpu_s": load_cpu,
        "load_cpu_pct": 100 * load_cpu / wall,
        "other_cpu_pct": 100 * other_cpu / (t1 - t0),
        "end_offsets": offsets,
        "per_process": [{"messages": per_process[i],
                         "start_offset_s": d["first_produce"] - min(
                             x["first_produce"] for x in done.values()),
                         "produce_to_last_report_s": d["last_report"] - d["first_produce"],
                         "cpu_s": d["cpu_s"],
                         "queue_full_waits": d["queue_full_waits"]}
                        for i, d in sorted(done.items())],
    })
    if errors:
        result["problems"].append(f"{errors} delivery errors, e.g. {result['error_samples']}")
    if undelivered:
        result["problems"].append(f"{undelivered} messages without a delivery report "
                                  f"after {case_timeout_s} s")
    if delivered != messages:
        result["problems"].append(f"{delivered} successful delivery reports for {messages} "
                                  "messages")
    if offsets is not None and sum(offsets) != expected_end:
        result["problems"].append(f"end offsets {offsets} add up to {sum(offsets)}, expected "
                                  f"{expected_end} ({messages} + {WARMUP_MESSAGES} warm-up "
                                  "per process)")
    result["ok"] = not result["problems"]
    return result


def delete_topic(admin, data_dir, topic):
    """Deletes a case's topic and waits until its partition directories are gone, so that the
    next case starts on a quiet disk and the data directory never holds more than one case."""
    futures = admin.delete_topics([topic], operation_timeout=ADMIN_TIMEOUT_S,
                                  request_timeout=ADMIN_TIMEOUT_S)
    futures[topic].result(timeout=ADMIN_TIMEOUT_S)
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while any(entry.name.startswith(topic + "-") for entry in data_dir.iterdir()):
        if time.monotonic() > deadline:
            raise BenchError(f"the directories of deleted topic {topic} are still in "
                             f"{data_dir} after {ADMIN_TIMEOUT_S} s")
        time.sleep(0.1)


def create_topics(admin, cases):
    from confluent_kafka.admin import NewTopic

    topics = [NewTopic(topic_name(size, parts, acks), num_partitions=parts, replication_factor=1)
              for size, parts, acks in cases]
    futures = admin.create_topics(topics, operation_timeout=ADMIN_TIMEOUT_S,
                                  request_timeout=ADMIN_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except Exception as exc:
            raise BenchError(f"creating topic {name} failed: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Output


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(results):
    header = ("size", "parts", "acks", "messages", "time s", "msgs/s", "MB/s",
              "broker CPU s/M msgs", "broker CPU %", "load CPU s", "load CPU %", "other CPU %",
              "result")
    rows = []
    for r in results:
        rows.append((f"{r['size']} B", str(r["partitions"]), r["acks"], f"{r['messages']:,}",
                     fmt(r.get("wall_s"), ".2f"), fmt(r.get("msgs_per_s"), ",.0f"),
                     fmt(r.get("mb_per_s"), ".1f"), fmt(r.get("broker_cpu_s_per_million"), ".2f"),
                     fmt(r.get("broker_cpu_pct"), ".0f"), fmt(r.get("load_cpu_s"), ".1f"),
                     fmt(r.get("load_cpu_pct"), ".0f"), fmt(r.get("other_cpu_pct"), ".0f"),
                     "ok" if r["ok"] else "FAILED"))
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]
    line = " | ".join(h.rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.rjust(w) for c, w in zip(row, widths)))
    print("time: first produce to last delivery report; MB = 10^6 payload bytes; CPU % is of one "
          "CPU over that time; broker CPU: utime+stime of the whole broker process; load CPU: "
          "the producer processes; other CPU: everything else busy on the machine meanwhile.")
    for r in results:
        for problem in r["problems"]:
            print(f"FAILED {r['size']} B, {r['partitions']} partitions, acks={r['acks']}: "
                  f"{problem}")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Produce throughput of ringlog under a librdkafka (confluent-kafka) load.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--messages", type=int, default=None,
                        help="messages per case, all processes together "
                             f"(default: {DEFAULT_MESSAGES[100]:,} of 100 B, "
                             f"{DEFAULT_MESSAGES[1024]:,} of 1 KiB: about 10 s per case)")
    parser.add_argument("--procs", type=int, default=DEFAULT_PROCS,
                        help="producer processes per case")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="message sizes in bytes, comma-separated")
    parser.add_argument("--partitions", default=",".join(map(str, PARTITIONS)),
                        help="partition counts, comma-separated")
    parser.add_argument("--acks", default=",".join(ACKS), help="acks values: 1, all")
    parser.add_argument("--case-timeout", type=float, default=120.0,
                        help="seconds a case may take before it is failed")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        args.partitions = [int(p) for p in args.partitions.split(",")]
    except ValueError:
        parser.error("--sizes and --partitions take comma-separated integers")
    args.acks = args.acks.split(",")
    if any(a not in ACKS for a in args.acks):
        parser.error("--acks takes 1 and/or all")
    if args.procs < 1 or (args.messages is not None and args.messages < args.procs):
        parser.error("--procs must be at least 1 and --messages at least --procs")
    return args


def broker_binary(script="produce_load.sh"):
    """RINGLOG_BIN or target/release/ringlog; `script` is the wrapper the error points to."""
    path = Path(os.environ.get("RINGLOG_BIN") or REPO_ROOT / "target/release/ringlog")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BenchError(f"{path} is not an executable: run benches/{script}, or build "
                         "it with `cargo build --release --bin ringlog`")
    return str(path.resolve())


def data_root():
    root = Path(os.environ.get("RINGLOG_BENCH_DIR") or REPO_ROOT / "target/bench-tmp")
    root.mkdir(parents=True, exist_ok=True)
    _, fstype, _ = filesystem_of(root)
    if fstype in ("tmpfs", "ramfs"):
        raise BenchError(f"{root} is on a {fstype}: the broker's direct I/O must hit a disk; "
                         "set RINGLOG_BENCH_DIR to a directory on a real filesystem")
    return root


def main(argv):
    args = parse_args(argv)
    import confluent_kafka
    import confluent_kafka.admin

    command = shlex.join([os.path.relpath(sys.executable, Path.cwd())] + sys.argv)
    binary = broker_binary()
    root = data_root()
    machine = machine_info(root, args.procs)
    cases = [(size, parts, acks) for size in args.sizes for parts in args.partitions
             for acks in args.acks]

    print(f"command: {command}")
    print(f"machine: nproc={machine['nproc']}, {machine['cpu_model']}, "
          f"Linux {machine['kernel']}, Python {machine['python']}, "
          f"confluent-kafka {confluent_kafka.__version__}, "
          f"librdkafka {confluent_kafka.libversion()[0]}")
    fs = machine["data_filesystem"]
    print(f"data: {root} ({fs['type']} on {fs['source']}); ringlog {machine['git']}")
    print(f"NOTE: the broker (--smp {BROKER_SMP}) and the load ({args.procs} producer "
          f"processes) share this machine's {machine['nproc']} CPUs, so msgs/s and MB/s are "
          "bounded by the shared CPUs; broker CPU s per million messages is the comparable "
          "figure.")

    workdir = Path(tempfile.mkdtemp(prefix="produce-load-", dir=root))
    broker = Broker(binary, workdir)
    results = []
    failed = True
    keep_log = True
    ctx = multiprocessing.get_context("spawn")  # no fork of a process running librdkafka
    try:
        broker.start()
        print(f"broker: {shlex.join(broker.command())} (pid {broker.proc.pid})")
        admin = broker.wait_ready(confluent_kafka.admin.AdminClient)
        create_topics(admin, cases)
        cpu0 = broker.cpu_seconds()
        time.sleep(IDLE_SAMPLE_S)
        idle_pct = 100 * (broker.cpu_seconds() - cpu0) / IDLE_SAMPLE_S
        print(f"broker idle CPU: {idle_pct:.1f} % of one CPU")
        print()
        for size, parts, acks in cases:
            messages = args.messages or DEFAULT_MESSAGES.get(size, DEFAULT_MESSAGES[1024])
            result = run_case(ctx, broker, admin, size, parts, acks, messages, args.procs,
                              args.case_timeout)
            results.append(result)
            if broker.alive():
                try:
                    delete_topic(admin, broker.data_dir, result["topic"])
                except Exception as exc:  # the case's figures stand; the failure is reported
                    result["problems"].append(f"deleting topic {result['topic']} after the "
                                              f"case: {exc}")
                    result["ok"] = False
            status = "ok" if result["ok"] else "FAILED"
            print(f"  {size} B, {parts} partitions, acks={acks}: {messages:,} messages "
                  f"{fmt(result.get('msgs_per_s'), ',.0f')} msgs/s {status}", flush=True)
            if not broker.alive():
                print("the broker is gone: remaining cases skipped")
                break
        print()
        print_table(results)
        del admin  # closes its connections before the broker goes
        died_early = not broker.alive()
        exit_code = broker.stop()
        problems = broker.problem_lines()
        print()
        print(f"broker exit code {'(it died before the end)' if died_early else 'after SIGTERM'}"
              f": {exit_code}")
        print(f"broker log warnings/errors: {len(problems)}")
        for line in problems[:20]:
            print(f"  {line}")
        failed = exit_code != 0 or not all(r["ok"] for r in results) or len(results) < len(cases)
        keep_log = failed or bool(problems)
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"command": command, "machine": machine,
                           "broker_command": broker.command(),
                           "broker_idle_cpu_pct": idle_pct,
                           "broker_exit_code": exit_code,
                           "producer_config": producer_config("<bootstrap>", "<acks>"),
                           "warmup_messages_per_process": WARMUP_MESSAGES,
                           "results": results}, out, indent=2)
            print(f"results written to {args.json}")
    finally:
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)
        if keep_log:
            print(f"broker log kept: {broker.log_path}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def on_sigterm(_signum, _frame):
    raise SystemExit("stopped by SIGTERM")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"produce_load: {exc}", file=sys.stderr)
        sys.exit(2)
