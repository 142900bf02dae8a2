"""Consumer-group rebalance time of a real `ringlog serve`: from members joining to the group
being stable, with confluent-kafka (librdkafka) consumers.

What it measures
----------------
For each `group_initial_rebalance_delay_ms` (default: 3000, Kafka's default and ringlog's, and 0)
the script starts its own broker with that setting, creates one topic (default 50 partitions),
and for each member count N (default 1, 10 and 50) runs several repetitions (default 5). One
repetition, with a new group id each time:

1. N confluent-kafka Consumers are created in this process (librdkafka's defaults: eager
   `range,roundrobin` assignment, `session.timeout.ms=45000`, `heartbeat.interval.ms=3000`,
   `max.poll.interval.ms=300000`) and each fetches the topic's metadata, so that every client
   is connected before the clock starts;
2. the clock starts; all N call subscribe() back to back; one thread then serves every
   consumer's callbacks (poll(0) on each in turn, about every 2 ms). Each assignment and
   revocation callback is timestamped;
3. the repetition ends when every member's latest callback is an assignment, no revocation has
   followed, and DescribeGroups (confluent_kafka.admin) shows the group Stable with N members.
   "join -> stable" is the time from the first subscribe() to the last member's last assignment;
   "first assignment" the time to the first assignment of any member; "assignments" the most
   assignment callbacks one member got (1: it took part in one completed rebalance);
4. the consumers are closed (in parallel; each sends LeaveGroup) and the next repetition starts.

`--client raw` replaces the consumers with members that speak the group protocol themselves
(kafka-python's protocol classes on one socket each, one thread each): JoinGroup v5 (with the
KIP-394 member-id round trip), SyncGroup v3 (the leader sends an empty assignment for every
member), then a Heartbeat every `--heartbeat-interval-ms`, rejoining at once on
REBALANCE_IN_PROGRESS. Without a client's own pacing (librdkafka sends at most one JoinGroup a
second per consumer) this shows the broker's part. "join -> stable" is then the time from the
first JoinGroup to the last member's SyncGroup answer of the final generation, once every
member holds that generation; "assignments" counts the SyncGroup successes of one member.

The broker is `ringlog serve --smp 2` on free ports with a fresh data directory under
$RINGLOG_BENCH_DIR (default target/bench-tmp, refused if it is a tmpfs) and a `--config` file
holding the `[group]` table; a DescribeGroups before the first repetition makes it create
`__consumer_offsets`, so that no repetition pays for that. The broker gets SIGTERM at the end
(or on an error), and its log is kept only when something went wrong. Run it with
benches/group_join.sh, which builds the release broker and the client virtualenv first.

With delay 0 a group completes its first rebalance as soon as the members known so far (those
handed a member id included) have joined; a member arriving a moment later starts another one,
which members already stable notice only at their next heartbeat, and which librdkafka joins at
most once a second. With the default 3000 ms the group waits until 3000 ms pass without a new
member (at most the rebalance timeout) and forms in one rebalance. Both are Kafka's behaviour.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import produce_load  # noqa: E402  (its Broker, machine and data-directory helpers)
from produce_load import BenchError  # noqa: E402

REPO_ROOT = produce_load.REPO_ROOT
DEFAULT_DELAYS = (3000, 0)
DEFAULT_MEMBERS = (1, 10, 50)
DEFAULT_RUNS = 5
DEFAULT_PARTITIONS = 50
POLL_ROUND_SLEEP_S = 0.002
ADMIN_TIMEOUT_S = 30


class Broker(produce_load.Broker):
    """produce_load's broker, started with a `--config` file."""

    def __init__(self, binary, workdir, config_text):
        super().__init__(binary, workdir)
        self.config_path = self.workdir / "ringlog.toml"
        self.config_path.write_text(config_text)

    def command(self):
        return super().command() + ["--config", str(self.config_path)]


class Member:
    """One consumer and the timestamps of its rebalance callbacks."""

    def __init__(self, consumer_class, bootstrap, group, index, heartbeat_interval_ms):
        self.events = []  # (monotonic time, "assign" | "revoke", partition count)
        self.consumer = consumer_class({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": f"member-{index}",
            "enable.auto.commit": False, "auto.offset.reset": "latest",
            "heartbeat.interval.ms": heartbeat_interval_ms,
        })

    def on_assign(self, _consumer, partitions):
        self.events.append((time.monotonic(), "assign", len(partitions)))

    def on_revoke(self, _consumer, partitions):
        self.events.append((time.monotonic(), "revoke", len(partitions)))

    def assigned(self):
        return bool(self.events) and self.events[-1][1] == "assign"


class RawMember:
    """A group member on its own socket, driven by its own thread (see the module doc)."""

    def __init__(self, host, port, group, topic, index, heartbeat_interval_ms, done):
        import socket
        self.group, self.index, self.done = group, index, done
        self.heartbeat_s = heartbeat_interval_ms / 1000
        self.sock = socket.create_connection((host, port), timeout=ADMIN_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        from kafka.protocol.group import ProtocolMetadata
        self.metadata = ProtocolMetadata.encode([0, [topic], b""])
        self.correlation_id = 0
        self.member_id = ""
        self.synced = []  # (monotonic time, generation) of each successful SyncGroup
        self.joining = True
        self.error = None

    def call(self, request):
        import struct
        self.correlation_id += 1
        header = struct.pack(">hhih", request.API_KEY, request.API_VERSION,
                             self.correlation_id, 3) + b"raw"
        payload = header + request.encode()
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", self._exactly(4))[0]
        body = self._exactly(size)
        assert struct.unpack(">i", body[:4])[0] == self.correlation_id
        return request.RESPONSE_TYPE.decode(body[4:])

    def _exactly(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def run(self):
        from kafka.protocol.group import (HeartbeatRequest_v3, JoinGroupRequest_v5,
                                          SyncGroupRequest_v3)
        member_id_required, rebalance_in_progress = 79, 27
        try:
            while not self.done.is_set():
                if not self.joining:
                    code = self.call(HeartbeatRequest_v3(self.group, self.generation,
                                                         self.member_id, None)).error_code
                    if code == rebalance_in_progress:
                        self.joining = True
                    elif code != 0:
                        raise BenchError(f"Heartbeat error {code}")
                    else:
                        self.done.wait(self.heartbeat_s)
                    continue
                joined = self.call(JoinGroupRequest_v5(
                    self.group, 45000, 300000, self.member_id, None, "consumer",
                    [("range", self.metadata)]))
                if joined.error_code == member_id_required:
                    self.member_id = joined.member_id
                    continue
                if joined.error_code != 0:
                    raise BenchError(f"JoinGroup error {joined.error_code}")
                self.generation = joined.generation_id
                assignments = [(member_id, b"") for member_id, _, _ in joined.members]
                synced = self.call(SyncGroupRequest_v3(self.group, self.generation,
                                                       self.member_id, None, assignments))
                if synced.error_code == 0:
                    self.synced.append((time.monotonic(), self.generation))
                    self.joining = False
                elif synced.error_code != rebalance_in_progress:
                    raise BenchError(f"SyncGroup error {synced.error_code}")
        except Exception as exc:  # reported by run_raw
            self.error = f"{type(exc).__name__}: {exc}"

    def leave(self):
        from kafka.protocol.group import LeaveGroupRequest_v3
        try:
            self.call(LeaveGroupRequest_v3(self.group, [(self.member_id, None)]))
        finally:
            self.sock.close()


def run_raw(broker, topic, group, count, heartbeat_interval_ms, timeout_s):
    """One repetition with raw-protocol members; returns its figures."""
    import threading
    host, port = broker.bootstrap.rsplit(":", 1)
    done = threading.Event()
    members = [RawMember(host, int(port), group, topic, i, heartbeat_interval_ms, done)
               for i in range(count)]
    threads = [threading.Thread(target=m.run, daemon=True) for m in members]
    try:
        started = time.monotonic()
        for thread in threads:
            thread.start()
        deadline = started + timeout_s
        while True:
            errors = [m.error for m in members if m.error]
            if errors:
                raise BenchError(f"{group}: {errors[:3]}")
            latest = [m.synced[-1][1] if m.synced else None for m in members]
            if (None not in latest and len(set(latest)) == 1
                    and not any(m.joining for m in members)):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{count} raw members, group {group}: not stable after "
                                 f"{timeout_s} s")
            broker.check_alive(f"while group {group} formed")
            time.sleep(POLL_ROUND_SLEEP_S)
        final = latest[0]
        return {
            "join_to_stable_s": max(t for m in members for t, g in m.synced if g == final)
            - started,
            "first_assignment_s": min(m.synced[0][0] for m in members) - started,
            "assignments_max": max(len(m.synced) for m in members),
            "generation": final,
        }
    finally:
        done.set()
        for thread in threads:
            thread.join(ADMIN_TIMEOUT_S)
        for member in members:
            try:
                member.leave()
            except Exception:  # the repetition's figures stand
                pass


def group_state(admin, group):
    from confluent_kafka import ConsumerGroupState
    described = admin.describe_consumer_groups([group])[group].result(timeout=ADMIN_TIMEOUT_S)
    return described.state == ConsumerGroupState.STABLE, len(described.members)


def run_once(broker, admin, topic, group, count, heartbeat_interval_ms, timeout_s):
    """One repetition; returns its figures."""
    from confluent_kafka import Consumer

    members = [Member(Consumer, broker.bootstrap, group, i, heartbeat_interval_ms)
               for i in range(count)]
    try:
        for member in members:
            member.consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S)
        started = time.monotonic()
        for member in members:
            member.consumer.subscribe([topic], on_assign=member.on_assign,
                                      on_revoke=member.on_revoke)
        deadline = started + timeout_s
        while True:
            for member in members:
                member.consumer.poll(0)
            if all(m.assigned() for m in members):
                stable, size = group_state(admin, group)
                if stable and size == count and all(m.assigned() for m in members):
                    break
            if time.monotonic() > deadline:
                held = sum(m.assigned() for m in members)
                raise BenchError(f"{count} members, group {group}: not stable after {timeout_s} s "
                                 f"({held} members hold an assignment)")
            broker.check_alive(f"while group {group} formed")
            time.sleep(POLL_ROUND_SLEEP_S)
        assigns = [[t for t, kind, _ in m.events if kind == "assign"] for m in members]
        partitions_held = sum(m.events[-1][2] for m in members)
        return {
            "join_to_stable_s": max(a[-1] for a in assigns) - started,
            "first_assignment_s": min(a[0] for a in assigns) - started,
            "assignments_max": max(len(a) for a in assigns),
            "partitions_assigned": partitions_held,
        }
    finally:
        with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
            list(pool.map(lambda m: m.consumer.close(), members))


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_table(rows, runs, client):
    header = ("initial delay ms", "members", "runs", "join->stable median s", "min s", "max s",
              "first assignment median s", "assignments/member max")
    if client == "raw":
        header += ("generation max",)
    lines = []
    for r in rows:
        s, f = r["join_to_stable_s"], r["first_assignment_s"]
        lines.append((str(r["delay_ms"]), str(r["members"]), f"{r['runs']}/{runs}",
                      f"{s['median']:.3f}", f"{s['min']:.3f}", f"{s['max']:.3f}",
                      f"{f['median']:.3f}", str(r["assignments_max"]))
                     + ((str(r["generation_max"]),) if client == "raw" else ()))
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    print(" | ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for line in lines:
        print(" | ".join(c.rjust(w) for c, w in zip(line, widths)))
    if client == "raw":
        print("join->stable: first JoinGroup to the last member's SyncGroup answer of the final "
              "generation; first assignment: the first SyncGroup answer; assignments/member: "
              "the most successful SyncGroups of one member; generation max: the final "
              "generation (1 = formed in one rebalance).")
    else:
        print("join->stable: first subscribe() to the last member's last assignment callback, "
              "with DescribeGroups showing Stable and every member; first assignment: to the "
              "first member's; assignments/member: the most assignment callbacks one member "
              "got.")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Time from consumers joining a group to the group being stable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--members", default=",".join(map(str, DEFAULT_MEMBERS)),
                        help="member counts, comma-separated")
    parser.add_argument("--delays", default=",".join(map(str, DEFAULT_DELAYS)),
                        help="group_initial_rebalance_delay_ms values, comma-separated")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="repetitions per case")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS,
                        help="partitions of the topic the members subscribe to")
    parser.add_argument("--client", choices=("confluent", "raw"), default="confluent",
                        help="members: confluent-kafka consumers, or raw-protocol members")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=3000,
                        help="the members' heartbeat.interval.ms (librdkafka's default)")
    parser.add_argument("--case-timeout", type=float, default=120.0,
                        help="seconds one repetition may take before the run fails")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    try:
        args.members = [int(n) for n in args.members.split(",")]
        args.delays = [int(d) for d in args.delays.split(",")]
    except ValueError:
        parser.error("--members and --delays take comma-separated integers")
    if args.runs < 1 or min(args.members) < 1 or min(args.delays) < 0:
        parser.error("--runs and --members must be at least 1, --delays not negative")
    return args


def run_delay(binary, root, delay_ms, args, results):
    """Starts a broker with this initial delay, runs every member count; appends rows."""
    import confluent_kafka.admin

    config = f"[group]\ngroup_initial_rebalance_delay_ms = {delay_ms}\n"
    workdir = Path(tempfile.mkdtemp(prefix="group-join-", dir=root))
    broker = Broker(binary, workdir, config)
    ok = False
    try:
        broker.start()
        print(f"broker: {shlex.join(broker.command())} (pid {broker.proc.pid}); "
              f"[group] group_initial_rebalance_delay_ms = {delay_ms}", flush=True)
        admin = broker.wait_ready(confluent_kafka.admin.AdminClient)
        topic = "group-join"
        futures = admin.create_topics([confluent_kafka.admin.NewTopic(
            topic, num_partitions=args.partitions, replication_factor=1)],
            operation_timeout=ADMIN_TIMEOUT_S, request_timeout=ADMIN_TIMEOUT_S)
        futures[topic].result(timeout=ADMIN_TIMEOUT_S)
        # The first group lookup creates __consumer_offsets: not part of any repetition.
        admin.describe_consumer_groups(["warm-up"])["warm-up"].result(timeout=ADMIN_TIMEOUT_S)
        for count in args.members:
            runs = []
            for run in range(args.runs):
                group = f"join-d{delay_ms}-n{count}-r{run}"
                if args.client == "raw":
                    figures = run_raw(broker, topic, group, count,
                                      args.heartbeat_interval_ms, args.case_timeout)
                else:
                    figures = run_once(broker, admin, topic, group, count,
                                       args.heartbeat_interval_ms, args.case_timeout)
                if figures.get("partitions_assigned", args.partitions) != args.partitions:
                    raise BenchError(f"{group}: {figures['partitions_assigned']} partitions "
                                     f"assigned, the topic has {args.partitions}")
                runs.append(figures)
                print(f"  delay {delay_ms} ms, {count} members, run {run + 1}: join->stable "
                      f"{figures['join_to_stable_s']:.3f} s, {figures['assignments_max']} "
                      "assignment(s) per member at most", flush=True)
            results.append({
                "delay_ms": delay_ms, "members": count, "runs": len(runs),
                "join_to_stable_s": summary([r["join_to_stable_s"] for r in runs]),
                "first_assignment_s": summary([r["first_assignment_s"] for r in runs]),
                "assignments_max": max(r["assignments_max"] for r in runs),
                "generation_max": max((r.get("generation", 0) for r in runs), default=0),
                "each_run": runs,
            })
        del admin
        code = broker.stop()
        problems = broker.problem_lines()
        print(f"broker exit code after SIGTERM: {code}; log warnings/errors: {len(problems)}")
        for line in problems[:20]:
            print(f"  {line}")
        ok = code == 0
    finally:
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"broker log kept: {broker.log_path}")
    return ok


def main(argv):
    args = parse_args(argv)
    import confluent_kafka

    command = shlex.join([os.path.relpath(sys.executable, Path.cwd())] + sys.argv)
    binary = produce_load.broker_binary("group_join.sh")
    root = produce_load.data_root()
    machine = produce_load.machine_info(root, 0)
    print(f"command: {command}")
    print(f"machine: nproc={machine['nproc']}, {machine['cpu_model']}, "
          f"Linux {machine['kernel']}, Python {machine['python']}, "
          f"confluent-kafka {confluent_kafka.__version__}, "
          f"librdkafka {confluent_kafka.libversion()[0]}; ringlog {machine['git']}")
    if args.client == "raw":
        print(f"members: raw protocol (JoinGroup v5, SyncGroup v3, Heartbeat v3 every "
              f"{args.heartbeat_interval_ms} ms), one socket and thread each, in this process")
    else:
        print(f"consumers: librdkafka defaults (eager range,roundrobin; session.timeout.ms "
              f"45000; max.poll.interval.ms 300000) with heartbeat.interval.ms "
              f"{args.heartbeat_interval_ms}; topic of {args.partitions} partitions; all "
              "members in this one process")
    print()
    results = []
    ok = all([run_delay(binary, root, delay, args, results) for delay in args.delays])
    print()
    print_table(results, args.runs, args.client)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"command": command, "machine": machine, "args": vars(args),
                       "results": results}, out, indent=2)
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, produce_load.on_sigterm)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"group_join: {exc}", file=sys.stderr)
        sys.exit(2)
