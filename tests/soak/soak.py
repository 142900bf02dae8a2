"""Mixed-client soak of one `ringlog serve --smp 2`, for the memory-safety checks.

Starts the broker given by --binary on free ports with a fresh data directory (as
tests/clients/conftest.py does), runs every kind of client the broker meets in the field at
once for --duration-s, then stops it with SIGTERM. It fails (exit status 1) when the broker
died, did not stop cleanly, or its log holds a sanitizer or allocator report.

Clients, each in its own thread with its own counters:
  * confluent-kafka producers: acks=all, acks=1, and idempotent (acks=all implied), 1 KiB values
  * kafka-python producers (acks=all and acks=1)
  * fetching consumers: a confluent-kafka consumer group whose members join and leave, and a
    kafka-python consumer reading from the beginning of assigned partitions
  * topic churn: CreateTopics/DeleteTopics, and auto-creation by producing to new names
  * hostile clients: connections that send half a frame, a whole produce and hang up before
    the answer, or reset the connection (SO_LINGER 0) mid-request

It prints the figures as it goes and at the end: requests served (the `ringlog_requests`
counters of /metrics on the admin port), broker RSS over time, messages produced and consumed,
and errors by client. Run by scripts/sanitize.sh; needs the client virtualenv of
scripts/client-tests.sh.
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
import wire  # noqa: E402  (the raw-protocol helpers of the client suite)
from conftest import free_ports  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
import kafka  # noqa: E402  (kafka-python)

READY_TIMEOUT_S = 120  # an ASAN build starts slowly on a loaded machine
STOP_TIMEOUT_S = 60
SAMPLE_INTERVAL_S = 10
VALUE = bytes(random.Random(7).getrandbits(8) for _ in range(1024))

# What a sanitizer, glibc's allocator checks or Rust's runtime print when memory goes wrong.
REPORT_PATTERNS = [
    r"ERROR: AddressSanitizer",
    r"ERROR: LeakSanitizer",
    r"AddressSanitizer:DEADLYSIGNAL",
    r"SUMMARY: AddressSanitizer",
    r"runtime error:",
    r"double free",
    r"free\(\): ",
    r"malloc\(\): ",
    r"realloc\(\): ",
    r"corrupted size vs\. prev_size",
    r"corrupted double-linked list",
    r"malloc_consolidate\(\)",
    r"munmap_chunk\(\)",
    r"\*\*\* stack smashing",
    r"panicked at",
    r"fatal runtime error",
]


class Stats:
    """Counters shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = Counter()
        self.errors = Counter()
        self.last_error = {}

    def add(self, name, amount=1):
        with self.lock:
            self.counts[name] += amount

    def error(self, client, exc):
        text = f"{type(exc).__name__}: {exc}"[:200]
        with self.lock:
            self.errors[client] += 1
            self.last_error[client] = text


class Broker:
    def __init__(self, binary, workdir, extra_env):
        self.binary = binary
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "broker.log"
        self.kafka_port, self.admin_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.extra_env = extra_env
        self.proc = None

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "serve", "--data-dir", str(self.data_dir),
               "--kafka-addr", self.bootstrap,
               "--admin-addr", f"127.0.0.1:{self.admin_port}", "--smp", "2"]
        with open(self.log_path, "ab") as log:
            log.write(f"==== {' '.join(cmd)}\n".encode())
            log.flush()
            # Its own session: the script's trap kills the whole group, whatever happens here.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "RUST_BACKTRACE": "1", **self.extra_env})
        # For the script's trap, should this process die without its finally.
        (self.workdir / "broker.pid").write_text(str(self.proc.pid))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} at start")
            try:
                answer = wire.api_versions("127.0.0.1", self.kafka_port, timeout_s=2)
                if answer.error_code == 0:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"broker not ready within {READY_TIMEOUT_S} s")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def counters(self):
        """Sums over labels of the `ringlog_*_total` counters of /metrics, by family name."""
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        sums = Counter()
        for line in text.splitlines():
            match = re.match(r"(ringlog_[a-z_]+)_total(\{[^}]*\})? ([0-9.e+]+)$", line)
            if match:
                sums[match.group(1)] += float(match.group(3))
        return sums

    def requests_served(self):
        """Requests received, and those answered with an error or closed, from /metrics."""
        sums = self.counters()
        return int(sums["ringlog_requests"]), int(sums["ringlog_request_errors"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def paced(stop, rate_per_s, step):
    """Calls step() about rate_per_s times a second until stop is set."""
    interval = 1.0 / rate_per_s
    next_at = time.monotonic()
    while not stop.is_set():
        step()
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            stop.wait(pause)
        elif pause < -1.0:
            next_at = time.monotonic()  # fell behind: do not burst to catch up


def confluent_producer(name, broker, stats, stop, config, topic, rate):
    def delivered(err, _msg):
        if err is None:
            stats.add("produced")
        else:
            stats.error(name, KafkaException(err))

    while not stop.is_set():
        try:
            producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                                 "message.timeout.ms": 30000, **config})

            # High rates go in bursts of a few messages, 200 bursts a second at most.
            burst = max(1, rate // 200)

            def step():
                for _ in range(burst):
                    try:
                        producer.produce(topic, VALUE, callback=delivered)
                    except BufferError as exc:
                        stats.error(name, exc)
                        producer.poll(0.1)
                producer.poll(0)

            deadline = time.monotonic() + random.uniform(30, 90)
            paced_until(stop, deadline, rate / burst, step)
            producer.flush(30)
            stats.add("producer_reconnects")
        except Exception as exc:  # a client failure is counted, not fatal to the soak
            stats.error(name, exc)
            stop.wait(1)


def paced_until(stop, deadline, rate, step):
    local_stop = threading.Event()

    def watch():
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.5)
        local_stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    paced(local_stop, rate, step)
    watcher.join()


def kafka_python_producer(name, broker, stats, stop, acks, topic, rate):
    while not stop.is_set():
        try:
            producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks,
                                           linger_ms=5, request_timeout_ms=30000)

            def step():
                future = producer.send(topic, VALUE)
                future.add_callback(lambda _m: stats.add("produced"))
                future.add_errback(lambda exc: stats.error(name, exc))

            paced_until(stop, time.monotonic() + random.uniform(30, 90), rate, step)
            producer.flush(30)
            producer.close(10)
        except Exception as exc:
            stats.error(name, exc)
            stop.wait(1)


def group_consumer(name, broker, stats, stop, topics):
    """A consumer-group member that joins, consumes a while and leaves, over and over."""
    while not stop.is_set():
        consumer = None
        try:
            consumer = Consumer({"bootstrap.servers": broker.bootstrap,
                                 "group.id": "soak-group", "auto.offset.reset": "earliest",
                                 "session.timeout.ms": 10000, "enable.auto.commit": True})
            consumer.subscribe(topics)
            until = time.monotonic() + random.uniform(10, 40)
            while not stop.is_set() and time.monotonic() < until:
                for message in consumer.consume(500, 1.0):
                    if message.error() is None:
                        stats.add("consumed")
                    else:
                        stats.error(name, KafkaException(message.error()))
            stats.add("group_leaves")
        except Exception as exc:
            stats.error(name, exc)
            stop.wait(1)
        finally:
            if consumer is not None:
                try:
                    consumer.close()
                except Exception as exc:
                    stats.error(name, exc)


def kafka_python_consumer(name, broker, stats, stop, topic):
    while not stop.is_set():
        consumer = None
        try:
            consumer = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap,
                                           auto_offset_reset="earliest",
                                           enable_auto_commit=False,
                                           fetch_max_wait_ms=200)
            partitions = consumer.partitions_for_topic(topic) or {0}
            consumer.assign([kafka.TopicPartition(topic, p) for p in sorted(partitions)])
            consumer.seek_to_beginning()
            until = time.monotonic() + random.uniform(20, 60)
            while not stop.is_set() and time.monotonic() < until:
                for records in consumer.poll(timeout_ms=500, max_records=2000).values():
                    stats.add("consumed", len(records))
        except Exception as exc:
            stats.error(name, exc)
            stop.wait(1)
        finally:
            if consumer is not None:
                consumer.close()


def topic_churn(name, broker, stats, stop):
    """Creates and deletes topics, and auto-creates others by producing to them."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    generation = 0
    while not stop.is_set():
        generation += 1
        created = f"soak-churn-{generation % 8}"
        try:
            futures = admin.create_topics([NewTopic(created, num_partitions=3,
                                                    replication_factor=1)])
            for future in futures.values():
                future.result(30)
            stats.add("topics_created")
            producer = Producer({"bootstrap.servers": broker.bootstrap,
                                 "message.timeout.ms": 20000})
            auto = f"soak-auto-{generation}"
            for index in range(200):
                producer.produce(created if index % 2 else auto, VALUE)
                producer.poll(0)
            producer.flush(30)
            stats.add("topics_auto_created")
            for doomed in (created, auto):
                for future in admin.delete_topics([doomed]).values():
                    future.result(30)
                stats.add("topics_deleted")
        except Exception as exc:
            stats.error(name, exc)
        stop.wait(random.uniform(1, 4))


def hostile_client(name, broker, stats, stop):
    """Clients that disappear mid-request in the ways real networks make them."""
    rng = random.Random(11)
    correlation = 0
    while not stop.is_set():
        correlation += 1
        batch = wire.record_batch([VALUE] * rng.randint(1, 20), int(time.time() * 1000))
        frame = wire.produce_request_v3(correlation, "soak-hostile", 0, batch,
                                        acks=rng.choice([-1, 1]))
        try:
            sock = socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5)
            kind = rng.randrange(4)
            if kind == 0:
                sock.sendall(frame[: rng.randint(1, len(frame) - 1)])  # half a frame
            elif kind == 1:
                sock.sendall(frame)  # a whole produce, gone before the answer
            elif kind == 2:
                sock.sendall(frame + frame[: len(frame) // 2])
            else:
                sock.sendall(wire.api_versions_request(3, correlation))
            if rng.random() < 0.5:
                # RST instead of FIN: SO_LINGER on, zero seconds.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            stats.add("hostile_connections")
        except OSError as exc:
            stats.error(name, exc)
        stop.wait(rng.uniform(0.01, 0.2))


def guarded(target, name, stats, *args):
    def run():
        try:
            target(name, *args)
        except Exception:
            stats.error(name, RuntimeError(traceback.format_exc(limit=3)))
    return threading.Thread(target=run, name=name, daemon=True)


def log_reports(log_path):
    text = Path(log_path).read_text(errors="replace")
    found = []
    for line in text.splitlines():
        if any(re.search(pattern, line) for pattern in REPORT_PATTERNS):
            found.append(line)
    return found


def full_mix(broker, stats, stop):
    # Rates stay moderate: the broker may be an ASAN build on a shared 2-core machine.
    return [
        guarded(confluent_producer, "ck-acks-all", stats, broker, stats, stop,
                {"acks": "all"}, "soak-main", 400),
        guarded(confluent_producer, "ck-acks-1", stats, broker, stats, stop,
                {"acks": "1"}, "soak-main", 400),
        guarded(confluent_producer, "ck-idempotent", stats, broker, stats, stop,
                {"enable.idempotence": True}, "soak-idem", 300),
        guarded(kafka_python_producer, "kp-acks-all", stats, broker, stats, stop,
                "all", "soak-kp", 100),
        guarded(kafka_python_producer, "kp-acks-1", stats, broker, stats, stop,
                1, "soak-kp", 100),
        guarded(group_consumer, "group-a", stats, broker, stats, stop,
                ["soak-main", "soak-idem"]),
        guarded(group_consumer, "group-b", stats, broker, stats, stop,
                ["soak-main", "soak-kp"]),
        guarded(kafka_python_consumer, "kp-consumer", stats, broker, stats, stop,
                "soak-main"),
        guarded(topic_churn, "topic-churn", stats, broker, stats, stop),
        guarded(hostile_client, "hostile", stats, broker, stats, stop),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the ringlog executable")
    parser.add_argument("--duration-s", type=int, default=600)
    parser.add_argument("--workdir", help="where the data dir and broker.log go "
                        "(default: a new temporary directory)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the data directory after a passing run (a failing run "
                        "always keeps it); ten minutes of soak write about a gigabyte")
    parser.add_argument("--label", default="soak")
    parser.add_argument("--mix", choices=["full", "producer"], default="full",
                        help="full: every client above; producer: only one confluent-kafka "
                        "producer, acks=all, on a topic it auto-creates (issue 17's report)")
    parser.add_argument("--rate", type=int, default=10000,
                        help="messages per second of the producer-only mix")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the broker's environment (repeatable)")
    args = parser.parse_args()
    # A SIGTERM (the script's trap) unwinds through the finally below, which kills the broker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = args.workdir or tempfile.mkdtemp(prefix="ringlog-soak-")
    extra_env = dict(item.split("=", 1) for item in args.env)
    broker = Broker(os.path.abspath(args.binary), workdir, extra_env)
    stats = Stats()
    stop = threading.Event()
    print(f"[{args.label}] broker {args.binary} on {broker.bootstrap}, admin "
          f"127.0.0.1:{broker.admin_port}, data {broker.data_dir}, log {broker.log_path}, "
          f"env {extra_env or '{}'}", flush=True)
    samples = []
    started = time.monotonic()
    problems = []
    served, request_errors, mesh_sent = (-1, -1, -1)
    try:
        broker.start()
        start_rss = broker.rss_kib()
        samples.append((0, start_rss, 0))
        print(f"[{args.label}] ready after {time.monotonic() - started:.1f} s, RSS "
              f"{start_rss} KiB", flush=True)
        if args.mix == "producer":
            threads = [guarded(confluent_producer, "ck-acks-all", stats, broker, stats, stop,
                               {"acks": "all", "queue.buffering.max.messages": 200000},
                               "soak-auto-created", args.rate)]
        else:
            threads = full_mix(broker, stats, stop)
        for thread in threads:
            thread.start()
        deadline = started + args.duration_s
        while time.monotonic() < deadline:
            time.sleep(min(SAMPLE_INTERVAL_S, max(0.1, deadline - time.monotonic())))
            if not broker.alive():
                problems.append(f"broker died with status {broker.proc.returncode} "
                                f"after {time.monotonic() - started:.0f} s")
                break
            try:
                served, _ = broker.requests_served()
            except OSError:
                served = -1
            elapsed = int(time.monotonic() - started)
            samples.append((elapsed, broker.rss_kib(), served))
            with stats.lock:
                counts = dict(stats.counts)
                errors = sum(stats.errors.values())
            print(f"[{args.label}] t={elapsed:5d} s  RSS {samples[-1][1]} KiB  requests "
                  f"{served}  produced {counts.get('produced', 0)}  consumed "
                  f"{counts.get('consumed', 0)}  client errors {errors}", flush=True)
        if broker.alive():
            try:
                served, request_errors = broker.requests_served()
                mesh_sent = int(broker.counters()["ringlog_mesh_messages_sent"])
            except OSError as exc:
                problems.append(f"/metrics did not answer at the end: {exc}")
        stop.set()
        for thread in threads:
            thread.join(60)
        if broker.alive():
            code = broker.stop()
            if code != 0:
                problems.append(f"broker exited with {code} after SIGTERM, expected 0")
        elif not problems:
            problems.append(f"broker died with status {broker.proc.returncode}")
    except Exception as exc:
        problems.append(f"soak failed: {exc}")
        traceback.print_exc()
    finally:
        stop.set()
        broker.kill()

    reports = log_reports(broker.log_path)
    elapsed = time.monotonic() - started
    print(f"\n[{args.label}] ==== figures after {elapsed:.0f} s ====")
    print(f"[{args.label}] requests served (ringlog_requests): {served}, "
          f"answered with an error or closed (ringlog_request_errors): {request_errors}, "
          f"cross-shard messages (ringlog_mesh_messages_sent): {mesh_sent}")
    rss = [s[1] for s in samples if s[1] is not None]
    if rss:
        print(f"[{args.label}] broker RSS KiB: start {rss[0]}, min {min(rss)}, max {max(rss)}, "
              f"last {rss[-1]}")
        step = max(1, len(samples) // 12)
        print(f"[{args.label}] RSS over time (s: KiB): " + ", ".join(
            f"{t}: {r}" for t, r, _ in samples[::step]))
    with stats.lock:
        for key in sorted(stats.counts):
            print(f"[{args.label}] {key}: {stats.counts[key]}")
        for client in sorted(stats.errors):
            print(f"[{args.label}] client errors {client}: {stats.errors[client]} "
                  f"(last: {stats.last_error[client]})")
    if reports:
        problems.append(f"{len(reports)} sanitizer/allocator/panic lines in "
                        f"{broker.log_path}:\n  " + "\n  ".join(reports[:40]))
    if problems:
        print(f"[{args.label}] FAILED:\n" + "\n".join(problems), flush=True)
        return 1
    print(f"[{args.label}] passed: no sanitizer or allocator report, clean SIGTERM stop",
          flush=True)
    if not args.keep_data:
        shutil.rmtree(broker.data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
