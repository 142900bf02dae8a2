"""Consumer groups with real clients: queues, publish-subscribe, resuming from committed offsets
(also across a broker `kill -9`), cooperative rebalancing, the admin APIs, and the error codes
and refusals of the group APIs on the wire.

Every broker here runs with `group_initial_rebalance_delay_ms = 0` (a group completes its first
rebalance as soon as its members have joined) and `group_min_session_timeout_ms = 1000`, so that
members can use session timeouts of a few seconds. Nothing asserts on timing (except the bound
on a hang in the expected failure at the end): "exactly once" means the (partition, offset)
pairs received equal the pairs produced, with no repeats.

NOT_COORDINATOR is not tested: one broker coordinates every group (a shard that does not own a
group forwards its requests over the mesh), so no client can reach a wrong coordinator.
"""

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                             KafkaException)
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import GroupIdNotFoundError, NoError, NonEmptyGroupError
from kafka.protocol.admin import DescribeGroupsRequest_v0
from kafka.protocol.commit import OffsetCommitRequest_v2
from kafka.protocol.group import (HeartbeatRequest_v1, JoinGroupRequest_v3, LeaveGroupRequest_v1,
                                  MemberAssignment, ProtocolMetadata, SyncGroupRequest_v1)
from kafka.structs import OffsetAndMetadata

import group_member
import rdkafka
import wire

HERE = Path(__file__).resolve().parent

GROUP_CONFIG = """\
[group]
group_initial_rebalance_delay_ms = 0
group_min_session_timeout_ms = 1000
"""

SESSION_TIMEOUT_MS = 3000
STATIC_SESSION_TIMEOUT_MS = 20000
WAIT_S = 60  # upper bound for anything a test waits for; normally seconds

# Kafka error codes (https://kafka.apache.org/protocol#protocol_error_codes).
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
INVALID_REQUEST = 42
GROUP_ID_NOT_FOUND = 69
GROUP_SUBSCRIBED_TO_TOPIC = 86

OFFSET_COMMIT = 8
OFFSET_DELETE = 47
JOIN_GROUP = 11
SYNC_GROUP = 14


@pytest.fixture
def broker_config():
    return GROUP_CONFIG


# ---------------------------------------------------------------------------------------------
# Helpers


def wait_until(predicate, what, timeout_s=WAIT_S):
    """Poll `predicate` until it returns something true and return that; fail after
    `timeout_s` with `what()` (a description of the state) in the message."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what()}")
        time.sleep(0.05)


def produce(broker, topic, count, partitions, tag):
    """`count` messages spread evenly over `partitions`; {(partition, offset): value}."""
    values = [f"{tag}-{i}" for i in range(count)]
    delivered = rdkafka.produce(broker.bootstrap, topic,
                                [{"value": v.encode(), "partition": i % partitions}
                                 for i, v in enumerate(values)])
    return {(d.partition, d.offset): v for d, v in zip(delivered, values)}


def assert_exactly_once(received, produced, who):
    """`received` ([(partition, offset, value)]) holds every produced message once, no other."""
    counts = Counter((p, o) for p, o, _ in received)
    repeated = sorted(key for key, n in counts.items() if n > 1)
    missing = sorted(set(produced) - set(counts))
    unexpected = sorted(set(counts) - set(produced))
    wrong_values = sorted((p, o) for p, o, v in received if (p, o) in produced
                          and produced[(p, o)] != v)
    assert not (repeated or missing or unexpected or wrong_values), (
        f"{who}: {len(received)} messages received for {len(produced)} produced; "
        f"read more than once: {repeated[:10]} ({len(repeated)}); never read: {missing[:10]} "
        f"({len(missing)}); not produced: {unexpected[:10]}; wrong value: {wrong_values[:10]}")


def committed_offsets(broker, group, topic):
    """{partition: committed offset} of `group` as the broker reports it (OffsetFetch)."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


class Reports:
    """The reports of one group member (see group_member.py), as they arrive."""

    def __init__(self, name):
        self.name = name
        self._lock = threading.Lock()
        self._items = []

    def add(self, report):
        with self._lock:
            self._items.append(report)

    def all(self):
        with self._lock:
            return list(self._items)

    def assignment(self):
        """The partitions the member holds now (eager protocol: each assignment is whole)."""
        held = set()
        for report in self.all():
            if report["event"] == "assigned":
                held = set(report["partitions"])
            elif report["event"] in ("revoked", "closed"):
                held = set()
        return held

    def records(self):
        return [tuple(r) for report in self.all() if report["event"] == "records"
                for r in report["records"]]

    def committed(self):
        """{partition: the highest offset the member committed}."""
        done = {}
        for report in self.all():
            if report["event"] == "committed":
                for p, o in report["offsets"].items():
                    done[int(p)] = max(done.get(int(p), 0), o)
        return done

    def errors(self):
        return [r["error"] for r in self.all() if r["event"] == "error"]

    def __repr__(self):
        return (f"{self.name}: holds {sorted(self.assignment())}, {len(self.records())} records, "
                f"committed {self.committed()}, errors {self.errors()}")


class ThreadMember(Reports):
    """group_member.run_member in a thread of the test process."""

    def __init__(self, name, bootstrap, topic, group, **options):
        super().__init__(name)
        self._stop = threading.Event()

        def body():
            try:
                group_member.run_member(bootstrap, topic, group, self.add, self._stop,
                                        client_id=name, **options)
            except Exception as exc:  # noqa: BLE001 - reported, the test shows it
                self.add({"event": "error", "error": f"{type(exc).__name__}: {exc}"})

        self._thread = threading.Thread(target=body, name=f"member-{name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s=30):
        """Leave the group (KafkaConsumer.close sends LeaveGroup) and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"{self.name} did not close within {timeout_s} s"


class ProcessMember(Reports):
    """group_member.py in its own process, so that it can be killed with SIGKILL."""

    def __init__(self, name, bootstrap, topic, group, stderr_path, pause_ms=0,
                 group_instance_id=None, session_timeout_ms=SESSION_TIMEOUT_MS):
        super().__init__(name)
        self._stderr = open(stderr_path, "wb")
        static = ["--group-instance-id", group_instance_id] if group_instance_id else []
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "group_member.py"), "--bootstrap", bootstrap,
             "--topic", topic, "--group", group, "--client-id", name,
             "--session-timeout-ms", str(session_timeout_ms), "--pause-ms", str(pause_ms),
             *static],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        self._reader = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.add(json.loads(line))

    def kill(self):
        """SIGKILL: the member vanishes without leaving the group."""
        self.proc.kill()
        self.proc.wait()
        self._reader.join(10)

    def stop(self, timeout_s=30):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout_s)
        self._reader.join(10)
        self._stderr.close()


@pytest.fixture
def members(broker, tmp_path):
    """Starts group members and stops every one still running at the end of the test."""
    started = []

    class Factory:
        def thread(self, name, topic, group, **options):
            member = ThreadMember(name, broker.bootstrap, topic, group,
                                  session_timeout_ms=SESSION_TIMEOUT_MS, **options)
            started.append(member)
            return member

        def process(self, name, topic, group, **options):
            member = ProcessMember(name, broker.bootstrap, topic, group,
                                   tmp_path / f"{name}.stderr", **options)
            started.append(member)
            return member

    yield Factory()
    for member in started:
        try:
            member.stop()
        except (AssertionError, subprocess.TimeoutExpired):
            pass


def split_between(members_, partitions):
    """True once every member holds partitions, none shared, all of `partitions` held."""
    held = [m.assignment() for m in members_]
    union = set().union(*held)
    return (all(held) and sum(len(h) for h in held) == len(union)
            and union == set(range(partitions)))


def received_all(members_, produced):
    got = {(p, o) for m in members_ for p, o, _ in m.records()}
    return set(produced) <= got


# ---------------------------------------------------------------------------------------------
# Queue, publish-subscribe, resume


@pytest.mark.timeout(90)
def test_queue_members_split_partitions_and_a_leaving_member_s_partitions_resume_at_its_commit(
        broker, members):
    """Queue semantics with kafka-python: two members of one group on a 4-partition topic each
    get partitions (disjoint, together all four) and together receive every message exactly
    once, each only from its own partitions. When one leaves (close: LeaveGroup) the other
    takes over its partitions, starting exactly at the offsets the leaver committed, so
    across both phases every message is read exactly once."""
    topic, group = "queue-leave", "queue-leave-group"
    rdkafka.create_topic(broker.bootstrap, topic, 4)
    a = members.thread("a", topic, group)
    b = members.thread("b", topic, group)
    wait_until(lambda: split_between([a, b], 4), lambda: f"a split of 4 partitions: {a}; {b}")

    first = produce(broker, topic, 1000, 4, "first")
    wait_until(lambda: received_all([a, b], first), lambda: f"all of 1000 messages: {a}; {b}")
    assert_exactly_once(a.records() + b.records(), first, "members a and b")
    for member in (a, b):
        assert {p for p, _, _ in member.records()} <= member.assignment(), member
    a_partitions, a_committed = a.assignment(), a.committed()
    ends = {p: 1 + max(o for q, o in first if q == p) for p in range(4)}
    assert a_committed == {p: ends[p] for p in a_partitions}, "a committed all it read"

    a.stop()
    wait_until(lambda: b.assignment() == {0, 1, 2, 3}, lambda: f"b to hold all: {b}")
    second = produce(broker, topic, 1000, 4, "second")
    wait_until(lambda: received_all([b], second), lambda: f"b to read 1000 more: {b}")
    assert_exactly_once(a.records() + b.records(), {**first, **second}, "both phases")
    for p in a_partitions:
        taken_over = [o for q, o, _ in b.records() if q == p]
        assert min(taken_over) == a_committed[p], (
            f"b started partition {p} at {min(taken_over)}, a had committed {a_committed[p]}")
    assert not a.errors() and not b.errors(), (a, b)


@pytest.mark.timeout(90)
def test_queue_a_killed_member_s_partitions_go_to_the_survivor_after_its_session_timeout(
        broker, members):
    """A member in its own process is SIGKILLed while it consumes (no LeaveGroup). After its
    session timeout the survivor holds all four partitions and resumes each of the dead
    member's partitions exactly at the offset committed when it died: no message is lost,
    and no message below a committed offset is read twice (only messages the dead member had
    read but not yet committed may be read again, as Kafka's at-least-once promises)."""
    topic, group = "queue-kill", "queue-kill-group"
    rdkafka.create_topic(broker.bootstrap, topic, 4)
    doomed = members.process("doomed", topic, group, pause_ms=20)
    survivor = members.thread("survivor", topic, group, pause_ms=20)
    wait_until(lambda: split_between([doomed, survivor], 4),
               lambda: f"a split of 4 partitions: {doomed}; {survivor}")

    first = produce(broker, topic, 2000, 4, "first")
    wait_until(lambda: len(doomed.records()) >= 200, lambda: f"doomed to read 200: {doomed}")
    doomed.kill()
    doomed_partitions = doomed.assignment()
    # A commit the member sent just before dying lands within milliseconds; its session
    # (3 s, renewed by that commit) keeps the partitions away from the survivor far longer.
    time.sleep(0.5)
    at_death = committed_offsets(broker, group, topic)
    assert all(at_death.get(p, 0) >= o for p, o in doomed.committed().items()), (
        f"the broker's committed offsets {at_death} are behind what the member saw "
        f"committed: {doomed.committed()}")

    wait_until(lambda: survivor.assignment() == {0, 1, 2, 3},
               lambda: f"the survivor to hold all 4 partitions: {survivor}")
    second = produce(broker, topic, 400, 4, "second")
    produced = {**first, **second}
    wait_until(lambda: received_all([doomed, survivor], produced),
               lambda: f"every message read: {doomed}; {survivor}")

    received = doomed.records() + survivor.records()
    counts = Counter((p, o) for p, o, _ in received)
    assert set(counts) == set(produced), "nothing lost, nothing invented"
    read_twice_below_commit = sorted(
        (p, o) for (p, o), n in counts.items() if n > 1 and o < at_death.get(p, 0))
    assert not read_twice_below_commit, (
        f"committed messages read again: {read_twice_below_commit[:10]}")
    for p in doomed_partitions:
        taken_over = sorted(o for q, o, _ in survivor.records() if q == p)
        assert taken_over[0] == at_death.get(p, 0), (
            f"the survivor resumed partition {p} at {taken_over[0]}, committed was "
            f"{at_death.get(p, 0)}")
    assert not survivor.errors(), survivor


@pytest.mark.timeout(90)
def test_a_static_member_restarted_within_its_session_keeps_its_partitions(broker, members):
    """Static membership (KIP-345, kafka-python's group_instance_id): a static member in its
    own process is SIGKILLed and started again with the same instance id before its session
    times out. It gets the same partitions back without a rebalance (the other member is never
    revoked anything) and resumes each exactly at the offset it had committed, so every message
    is read once, except those the killed process had read but not committed."""
    topic, group = "static", "static-group"
    rdkafka.create_topic(broker.bootstrap, topic, 4)
    # A long session, so that the restart (a new Python process) surely comes within it.
    first = members.process("static-1", topic, group, pause_ms=20, group_instance_id="s1",
                            session_timeout_ms=STATIC_SESSION_TIMEOUT_MS)
    other = members.thread("other", topic, group)
    wait_until(lambda: split_between([first, other], 4),
               lambda: f"a split of 4 partitions: {first}; {other}")
    before = produce(broker, topic, 1000, 4, "static")
    wait_until(lambda: len(first.records()) >= 100, lambda: f"first to read 100: {first}")
    first.kill()
    held = first.assignment()
    other_reports_before = len(other.all())
    time.sleep(0.5)  # a commit sent just before the kill lands (see the killed-member test)
    at_death = committed_offsets(broker, group, topic)
    second = members.process("static-2", topic, group, group_instance_id="s1",
                             session_timeout_ms=STATIC_SESSION_TIMEOUT_MS)
    wait_until(lambda: received_all([first, second, other], before),
               lambda: f"every message read: {first}; {second}; {other}")
    assert second.assignment() == held, f"{second} should hold {sorted(held)}"
    rebalances = [r for r in other.all()[other_reports_before:]
                  if r["event"] in ("assigned", "revoked")]
    assert not rebalances, f"the other member saw a rebalance: {rebalances}"
    for p in held:
        resumed = min((o for q, o, _ in second.records() if q == p), default=None)
        if resumed is not None:
            assert resumed == at_death.get(p, 0), (
                f"partition {p}: the restarted member resumed at {resumed}, "
                f"{at_death.get(p, 0)} was committed")
    counts = Counter((p, o) for p, o, _ in first.records() + second.records() + other.records())
    assert not [k for k, n in counts.items() if n > 1 and k[1] < at_death.get(k[0], 0)]
    assert not second.errors() and not other.errors(), (second, other)


@pytest.mark.timeout(90)
def test_publish_subscribe_every_group_receives_every_message(broker, members):
    """Two groups on one topic (one with two members, one with one): each group as a whole
    receives every message exactly once, independently of the other."""
    topic = "pubsub"
    rdkafka.create_topic(broker.bootstrap, topic, 4)
    x1 = members.thread("x1", topic, "pubsub-x")
    x2 = members.thread("x2", topic, "pubsub-x")
    y1 = members.thread("y1", topic, "pubsub-y")
    wait_until(lambda: split_between([x1, x2], 4) and split_between([y1], 4),
               lambda: f"both groups assigned: {x1}; {x2}; {y1}")
    produced = produce(broker, topic, 1000, 4, "pubsub")
    wait_until(lambda: received_all([x1, x2], produced) and received_all([y1], produced),
               lambda: f"both groups to read everything: {x1}; {x2}; {y1}")
    assert_exactly_once(x1.records() + x2.records(), produced, "group pubsub-x")
    assert_exactly_once(y1.records(), produced, "group pubsub-y")


def consume_some(bootstrap, topic, group, want, deadline_s=WAIT_S):
    """A kafka-python group consumer reads at least `want` records (or all that come within
    the deadline), commits exactly the offsets after them, and closes."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=300,
                             max_poll_records=100,
                             fetch_max_wait_ms=group_member.FETCH_MAX_WAIT_MS)
    records = []
    try:
        deadline = time.monotonic() + deadline_s
        while len(records) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records += [(r.partition, r.offset, r.value.decode()) for r in batch]
        next_offsets = {}
        for p, o, _ in records:
            next_offsets[p] = max(next_offsets.get(p, 0), o + 1)
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                         for p, o in next_offsets.items()})
    finally:
        consumer.close(autocommit=False)
    return records, next_offsets


@pytest.mark.timeout(90)
@pytest.mark.parametrize("between", ["nothing", "broker kill -9 and restart"])
def test_a_new_consumer_resumes_after_the_last_committed_offset(broker, between):
    """Resume: a kafka-python consumer with a group id reads about half of 1,000 messages,
    commits what it read and exits; a new consumer in the same group starts on each partition
    exactly at the committed offset and reads the rest, so the two together read every message
    exactly once. With a broker `kill -9` and restart in between, the committed offsets
    (acknowledged only once durable) survive and the same holds."""
    topic, group = "resume", "resume-group"
    rdkafka.create_topic(broker.bootstrap, topic, 2)
    produced = produce(broker, topic, 1000, 2, "resume")
    first, committed = consume_some(broker.bootstrap, topic, group, 500)
    assert 500 <= len(first) < 1000, f"the first consumer read {len(first)} messages"
    assert committed_offsets(broker, group, topic) == committed

    if between != "nothing":
        broker.kill9()
        broker.start()
        assert committed_offsets(broker, group, topic) == committed, "after kill -9"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert (group, "consumer") in admin.list_consumer_groups()
            [described] = admin.describe_consumer_groups([group])
            assert described.state == "Empty" and not described.members
        finally:
            admin.close()

    rest, _ = consume_some(broker.bootstrap, topic, group, 1000 - len(first))
    assert_exactly_once(first + rest, produced, "the two consumers")
    for p in range(2):
        resumed_at = min((o for q, o, _ in rest if q == p), default=None)
        if resumed_at is not None:
            assert resumed_at == committed.get(p, 0), (
                f"partition {p}: the new consumer started at {resumed_at}, "
                f"the committed offset was {committed.get(p)}")


# ---------------------------------------------------------------------------------------------
# confluent-kafka, cooperative-sticky


class Journal:
    """One ordered log of what every confluent-kafka member did: deliveries and successful
    commits, so that "was this message read after its offset had been committed?" can be
    answered."""

    def __init__(self):
        self._lock = threading.Lock()
        self.entries = []  # (kind, member, partition, offset); kind "read" or "committed"

    def add(self, kind, member, pairs):
        with self._lock:
            self.entries.extend((kind, member, p, o) for p, o in pairs)

    def reads(self):
        with self._lock:
            return [(m, p, o) for kind, m, p, o in self.entries if kind == "read"]


class CooperativeMember:
    """A confluent-kafka consumer with partition.assignment.strategy=cooperative-sticky in its
    own thread: consume a batch, journal it, commit the offsets after it synchronously
    (retrying while the group rebalances), journal the commit, repeat. Its assignment is
    tracked from the incremental assign/revoke callbacks."""

    def __init__(self, name, bootstrap, topic, group, journal):
        self.name = name
        self.journal = journal
        self.held = set()
        self.history = []  # ("assign" | "revoke" | "lost", [partitions])
        self.errors = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic, group),
                                        name=f"coop-{name}", daemon=True)
        self._thread.start()

    def assignment(self):
        with self._lock:
            return set(self.held)

    def _on_assign(self, consumer, partitions):
        with self._lock:
            self.held |= {tp.partition for tp in partitions}
            self.history.append(("assign", sorted(tp.partition for tp in partitions)))

    def _on_revoke(self, consumer, partitions, kind="revoke"):
        with self._lock:
            self.held -= {tp.partition for tp in partitions}
            self.history.append((kind, sorted(tp.partition for tp in partitions)))

    def _commit(self, consumer, topic, next_offsets):
        offsets = [RdTopicPartition(topic, p, o) for p, o in next_offsets.items()]
        for _ in range(200):
            try:
                result = consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() and error.name() not in (
                        "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"):
                    raise
                time.sleep(0.05)
                continue
            failed = [tp for tp in result if tp.error is not None]
            if failed:
                raise AssertionError(f"{self.name}: commit failed for {failed}")
            self.journal.add("committed", self.name, next_offsets.items())
            return
        raise AssertionError(f"{self.name}: commit of {next_offsets} kept failing")

    def _run(self, bootstrap, topic, group):
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": self.name,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
            "fetch.wait.max.ms": group_member.FETCH_MAX_WAIT_MS}, logger=rdkafka.LOGGER)
        try:
            consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=lambda c, ps: self._on_revoke(c, ps, "lost"))
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=50, timeout=0.1)
                batch = []
                for message in messages:
                    if message.error() is not None:
                        self.errors.append(str(message.error()))
                        continue
                    batch.append((message.partition(), message.offset()))
                if not batch:
                    continue
                self.journal.add("read", self.name, batch)
                next_offsets = {}
                for p, o in batch:
                    next_offsets[p] = max(next_offsets.get(p, 0), o + 1)
                self._commit(consumer, topic, next_offsets)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            consumer.close()

    def stop(self, timeout_s=30):
        """Leave the group: close() revokes the partitions and sends LeaveGroup."""
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"{self.name} did not close within {timeout_s} s"

    def __repr__(self):
        return f"{self.name}: holds {sorted(self.assignment())}, errors {self.errors[:3]}"


@pytest.mark.timeout(120)
def test_cooperative_sticky_members_join_and_leave_one_by_one_without_loss_or_duplicates(
        broker):
    """confluent-kafka with cooperative-sticky assignment: three consumers join one at a time
    and then leave one at a time while a producer keeps sending. After every change the
    members hold disjoint partitions covering all four; rebalances are incremental (a member
    already in the group never gives up all its partitions at once when another joins); and in
    the end every message was read exactly once, none of them after its offset had been
    committed, so nothing committed was lost or read twice."""
    topic, group = "cooperative", "cooperative-group"
    rdkafka.create_topic(broker.bootstrap, topic, 4)
    journal = Journal()
    produced = {}

    def produce_batch(tag):
        produced.update(produce(broker, topic, 300, 4, tag))

    def wait_split(active):
        wait_until(lambda: split_between(active, 4),
                   lambda: f"a split of 4 partitions over {len(active)}: {active}")

    def wait_read_all():
        wait_until(lambda: set(produced) <= {(p, o) for _, p, o in journal.reads()},
                   lambda: f"all {len(produced)} messages read: {active}")

    active = []
    started = []
    try:
        for name in ("c1", "c2", "c3"):
            member = CooperativeMember(name, broker.bootstrap, topic, group, journal)
            started.append(member)
            active.append(member)
            produce_batch(f"join-{name}")  # sent while the group rebalances
            wait_split(active)
            produce_batch(f"after-{name}")
            wait_read_all()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap}, logger=rdkafka.LOGGER)
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "cooperative-sticky"
        assert len(described.members) == 3
        for name in ("c3", "c2"):
            leaving = active.pop()
            assert leaving.name == name
            produce_batch(f"leave-{name}")
            leaving.stop()
            wait_split(active)
            produce_batch(f"after-leave-{name}")
            wait_read_all()
        active.pop().stop()
    finally:
        for member in started:
            member.stop()

    for member in started:
        assert not member.errors, member
    # c1 was there when c2 and c3 joined: cooperative rebalancing only takes away what moves.
    c1 = started[0]
    revoked = [ps for kind, ps in c1.history if kind in ("revoke", "lost")]
    assert all(len(ps) < 4 for ps in revoked[:-1]), f"c1's history: {c1.history}"
    reads = journal.reads()
    assert_exactly_once([(p, o, produced[(p, o)]) for _, p, o in reads], produced,
                        "three cooperative-sticky members")
    committed = {}
    for kind, member, p, o in journal.entries:
        if kind == "committed":
            committed[p] = max(committed.get(p, 0), o)
        else:
            assert o >= committed.get(p, 0), (
                f"{member} read partition {p} offset {o} after offset {committed[p]} had been "
                "committed")
    ends = {p: 1 + max(o for q, o in produced if q == p) for p in range(4)}
    assert committed == ends
    final = rdkafka.consumer(broker.bootstrap, **{"group.id": group})
    try:
        stored = final.committed([RdTopicPartition(topic, p) for p in range(4)], timeout=30)
    finally:
        final.close()
    assert {tp.partition: tp.offset for tp in stored} == ends


# ---------------------------------------------------------------------------------------------
# The group APIs on the wire: error codes and refusals


class Raw:
    """One connection speaking requests built with kafka-python's protocol classes (their
    non-flexible versions: request header v1, response header v0)."""

    def __init__(self, broker, timeout_s=30):
        self.sock = socket.create_connection((broker.host, broker.kafka_port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_correlation_id = 1

    def send(self, request):
        """Sends without waiting; returns what `receive` needs."""
        correlation_id = self.next_correlation_id
        self.next_correlation_id += 1
        self.sock.sendall(wire.request_frame(request.API_KEY, request.API_VERSION,
                                             correlation_id, request.encode(),
                                             client_id="raw-group-tests"))
        return request, correlation_id

    def receive(self, sent):
        request, correlation_id = sent
        payload = wire.read_frame(self.sock)
        (answered,) = struct.unpack(">i", payload[:4])
        assert answered == correlation_id, f"answer {answered} to request {correlation_id}"
        return request.RESPONSE_TYPE.decode(payload[4:])

    def call(self, request):
        return self.receive(self.send(request))

    def close(self):
        self.sock.close()


def metadata_for(topic):
    # Struct.encode as a class method: kafka-python's instance encode() holds only a weak
    # reference to its instance, so a temporary would be gone before it encodes.
    return ProtocolMetadata.encode([0, [topic], b""])


def join_request(group, topic, member_id="", session_timeout_ms=6000, metadata=None):
    """JoinGroup v3: no KIP-394 round trip, a new member is added at once."""
    return JoinGroupRequest_v3(group=group, session_timeout=session_timeout_ms,
                               rebalance_timeout=10000, member_id=member_id,
                               protocol_type="consumer",
                               group_protocols=[("range", metadata or metadata_for(topic))])


def heartbeat_code(conn, group, member_id, generation):
    return conn.call(HeartbeatRequest_v1(group=group, generation_id=generation,
                                         member_id=member_id)).error_code


def commit_codes(conn, group, member_id, generation, topic, offset=5, partition=0):
    request = OffsetCommitRequest_v2(consumer_group=group, consumer_group_generation_id=generation,
                                     consumer_id=member_id, retention_time=-1,
                                     topics=[(topic, [(partition, offset, "")])])
    return [code for _, partitions in conn.call(request).topics for _, code in partitions]


def group_state(broker, group):
    conn = Raw(broker)
    try:
        described = conn.call(DescribeGroupsRequest_v0(groups=[group]))
        [(error_code, _, state, _, _, _)] = described.groups
    finally:
        conn.close()
    assert error_code == NONE
    return state


def assignment_of(topic, partitions):
    return MemberAssignment.encode([0, [(topic, partitions)], b""])


@pytest.mark.timeout(60)
def test_membership_and_commit_error_codes_are_kafka_s(broker):
    """Raw JoinGroup/SyncGroup/Heartbeat/OffsetCommit/LeaveGroup requests get Kafka's error
    codes: INVALID_SESSION_TIMEOUT below group_min_session_timeout_ms; ILLEGAL_GENERATION for
    a wrong generation (and for a commit with a generation to a group that does not exist);
    UNKNOWN_MEMBER_ID for a member the group does not have; UNKNOWN_TOPIC_OR_PARTITION for a
    commit to a missing topic; REBALANCE_IN_PROGRESS to a member's heartbeat and SyncGroup while
    another member joins, and to a commit while the group waits for the leader's assignment
    (a commit with the current generation during the join barrier is accepted, as in Kafka)."""
    topic, group = "wire", "wire-group"
    rdkafka.create_topic(broker.bootstrap, topic, 2)
    a, b = Raw(broker), Raw(broker)
    try:
        assert a.call(join_request(group, topic, session_timeout_ms=500)).error_code == \
            INVALID_SESSION_TIMEOUT

        joined = a.call(join_request(group, topic))
        assert joined.error_code == NONE, joined
        m1, generation = joined.member_id, joined.generation_id
        assert joined.leader_id == m1 and [m for m, _ in joined.members] == [m1]
        synced = a.call(SyncGroupRequest_v1(group=group, generation_id=generation, member_id=m1,
                                            group_assignment=[(m1, assignment_of(topic, [0, 1]))]))
        assert synced.error_code == NONE
        assert synced.member_assignment == assignment_of(topic, [0, 1])
        assert group_state(broker, group) == "Stable"

        assert heartbeat_code(a, group, m1, generation) == NONE
        assert heartbeat_code(a, group, m1, generation + 1) == ILLEGAL_GENERATION
        assert heartbeat_code(a, group, "nobody", generation) == UNKNOWN_MEMBER_ID
        assert commit_codes(a, group, m1, generation, topic) == [NONE]
        assert commit_codes(a, group, m1, generation + 1, topic) == [ILLEGAL_GENERATION]
        assert commit_codes(a, group, "nobody", generation, topic) == [UNKNOWN_MEMBER_ID]
        assert commit_codes(a, group, m1, generation, "no-such-topic") == \
            [UNKNOWN_TOPIC_OR_PARTITION]
        assert commit_codes(a, "never-joined", "someone", 3, topic) == [ILLEGAL_GENERATION]

        # A second member joins: the group waits for m1 to rejoin.
        b_join = b.send(join_request(group, topic))
        wait_until(lambda: group_state(broker, group) == "PreparingRebalance",
                   lambda: f"the join barrier, state {group_state(broker, group)}")
        assert heartbeat_code(a, group, m1, generation) == REBALANCE_IN_PROGRESS
        assert a.call(SyncGroupRequest_v1(group=group, generation_id=generation, member_id=m1,
                                          group_assignment=[])).error_code == \
            REBALANCE_IN_PROGRESS
        assert commit_codes(a, group, m1, generation, topic, offset=6) == [NONE]

        rejoined = a.call(join_request(group, topic, member_id=m1))
        b_joined = b.receive(b_join)
        assert rejoined.error_code == NONE and b_joined.error_code == NONE
        assert rejoined.generation_id == b_joined.generation_id == generation + 1
        generation += 1
        m2 = b_joined.member_id
        assert rejoined.leader_id == b_joined.leader_id == m1
        assert sorted(m for m, _ in rejoined.members) == sorted([m1, m2])
        assert b_joined.members == []
        assert group_state(broker, group) == "CompletingRebalance"
        assert commit_codes(a, group, m1, generation, topic) == [REBALANCE_IN_PROGRESS]

        b_sync = b.send(SyncGroupRequest_v1(group=group, generation_id=generation, member_id=m2,
                                            group_assignment=[]))
        leader_sync = a.call(SyncGroupRequest_v1(
            group=group, generation_id=generation, member_id=m1,
            group_assignment=[(m1, assignment_of(topic, [0])), (m2, assignment_of(topic, [1]))]))
        follower_sync = b.receive(b_sync)
        assert leader_sync.error_code == NONE and follower_sync.error_code == NONE
        assert leader_sync.member_assignment == assignment_of(topic, [0])
        assert follower_sync.member_assignment == assignment_of(topic, [1])
        assert heartbeat_code(a, group, m1, generation) == NONE
        assert heartbeat_code(b, group, m2, generation) == NONE

        assert a.call(LeaveGroupRequest_v1(group=group, member_id=m1)).error_code == NONE
        assert heartbeat_code(b, group, m2, generation) == REBALANCE_IN_PROGRESS
        assert a.call(LeaveGroupRequest_v1(group=group, member_id=m1)).error_code == \
            UNKNOWN_MEMBER_ID
    finally:
        a.close()
        b.close()
    # The commits above were stored: OffsetFetch sees the last accepted one.
    assert committed_offsets(broker, group, topic) == {0: 6}
    assert "panicked" not in broker.log_text()


@pytest.mark.timeout(60)
def test_oversized_join_metadata_is_refused_and_the_broker_keeps_serving(broker):
    """A JoinGroup whose protocol metadata exceeds 1 MiB (member_metadata_max_bytes) gets
    INVALID_REQUEST and adds no member; the same connection then joins normally and is the
    group's only member."""
    topic, group = "big-metadata", "big-metadata-group"
    rdkafka.create_topic(broker.bootstrap, topic, 1)
    conn = Raw(broker)
    try:
        refused = conn.call(join_request(group, topic, metadata=b"\0" * (1024 * 1024 + 1)))
        assert refused.error_code == INVALID_REQUEST, refused
        joined = conn.call(join_request(group, topic))
        assert joined.error_code == NONE, joined
        assert [m for m, _ in joined.members] == [joined.member_id]
        assert wire.api_versions(broker.host, broker.kafka_port).error_code == NONE
    finally:
        conn.close()
    assert "panicked" not in broker.log_text()


def _string(text):
    return wire.nullable_string(text)


# name -> a request frame the broker cannot decode. The broker must close the connection.
MALFORMED = {
    "JoinGroup v3 cut inside the group id": wire.request_frame(
        JOIN_GROUP, 3, 101, struct.pack(">h", 200) + b"abc"),
    "JoinGroup v5 claiming 2^31-1 protocols": wire.request_frame(
        JOIN_GROUP, 5, 102, _string("g") + struct.pack(">ii", 6000, 10000) + _string("")
        + _string(None) + _string("consumer") + struct.pack(">i", 2**31 - 1)),
    "JoinGroup v5 with protocol metadata longer than the frame": wire.request_frame(
        JOIN_GROUP, 5, 103, _string("g") + struct.pack(">ii", 6000, 10000) + _string("")
        + _string(None) + _string("consumer") + struct.pack(">i", 1) + _string("range")
        + struct.pack(">i", 50_000_000) + b"\0" * 16),
    "JoinGroup v6 (flexible) with a compact string longer than the frame": wire.request_frame(
        JOIN_GROUP, 6, 104, wire.uvarint(1000) + b"g", flexible=True),
    "SyncGroup v1 with an assignment longer than the frame": wire.request_frame(
        SYNC_GROUP, 1, 105, _string("g") + struct.pack(">i", 1) + _string("m")
        + struct.pack(">i", 1) + _string("m") + struct.pack(">i", 2**30)),
    "OffsetCommit v2 claiming 2^31-1 topics": wire.request_frame(
        OFFSET_COMMIT, 2, 106, _string("g") + struct.pack(">i", 1) + _string("m")
        + struct.pack(">q", -1) + struct.pack(">i", 2**31 - 1)),
    "OffsetCommit v2 cut inside a partition": wire.request_frame(
        OFFSET_COMMIT, 2, 107, _string("g") + struct.pack(">i", 1) + _string("m")
        + struct.pack(">q", -1) + struct.pack(">i", 1) + _string("t") + struct.pack(">i", 1)
        + struct.pack(">i", 0) + b"\0\0"),
    "OffsetCommit v8 (flexible) cut after the group id": wire.request_frame(
        OFFSET_COMMIT, 8, 108, wire.compact_string("g"), flexible=True),
    "OffsetDelete v0 claiming 2^31-1 partitions": wire.request_frame(
        OFFSET_DELETE, 0, 109, _string("g") + struct.pack(">i", 1) + _string("t")
        + struct.pack(">i", 2**31 - 1)),
    "Heartbeat v1 with an empty body": wire.request_frame(12, 1, 110, b""),
    "DescribeGroups v0 claiming 2^31-1 groups": wire.request_frame(
        15, 0, 111, struct.pack(">i", 2**31 - 1)),
}


@pytest.mark.timeout(90)
def test_malformed_group_requests_close_their_connection_and_the_broker_keeps_serving(
        broker):
    """Truncated group requests and ones claiming absurd counts or lengths (JoinGroup,
    SyncGroup, OffsetCommit, OffsetDelete, Heartbeat, DescribeGroups, flexible and not), all
    on connections open at once: each connection is closed within 10 s without an answer, a
    connection opened before them keeps working, the broker does not panic, and a kafka-python
    group consumer then reads, commits and resumes as usual."""
    topic, group = "after-malformed", "after-malformed-group"
    rdkafka.create_topic(broker.bootstrap, topic, 2)
    bystander = Raw(broker)
    sockets = {}
    try:
        for name, frame in MALFORMED.items():
            sock = socket.create_connection((broker.host, broker.kafka_port), timeout=5)
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                pass
            sockets[name] = sock
        problems = []
        for name, sock in sockets.items():
            outcome, data = wire.await_close_or_frame(sock, 10)
            if outcome != "closed":
                problems.append(f"{name}: {outcome} {data[:64]!r}")
        assert not problems, "\n".join(problems)
        assert bystander.call(DescribeGroupsRequest_v0(groups=[group])).groups[0][0] == NONE
    finally:
        bystander.close()
        for sock in sockets.values():
            sock.close()
    assert broker.alive()
    produced = produce(broker, topic, 200, 2, "after")
    first, _ = consume_some(broker.bootstrap, topic, group, 100)
    rest, _ = consume_some(broker.bootstrap, topic, group, 200 - len(first))
    assert_exactly_once(first + rest, produced, "a group consumer after the malformed requests")
    assert "panicked" not in broker.log_text()


# ---------------------------------------------------------------------------------------------
# Admin APIs: ListGroups, DescribeGroups, OffsetFetch, DeleteGroups, OffsetDelete


def offset_delete(broker, group, topic, partitions):
    """OffsetDelete v0 (kafka-python 2.3.3 has no client for it): returns (group error code,
    {partition: error code}). Request: group_id string, topics [name string, partitions
    [partition_index int32]]; response: error_code int16, throttle_time_ms int32, topics
    [name string, partitions [partition_index int32, error_code int16]]."""
    body = (_string(group) + struct.pack(">i", 1) + _string(topic)
            + struct.pack(">i", len(partitions))
            + b"".join(struct.pack(">i", p) for p in partitions))
    with socket.create_connection((broker.host, broker.kafka_port), timeout=30) as sock:
        sock.sendall(wire.request_frame(OFFSET_DELETE, 0, 77, body))
        reader = wire.Reader(wire.read_frame(sock))
    assert reader.int32() == 77
    error_code = reader.int16()
    reader.int32()  # throttle_time_ms
    codes = {}
    for _ in range(reader.int32()):
        assert reader.take(reader.int16()).decode() == topic
        for _ in range(reader.int32()):
            partition = reader.int32()
            codes[partition] = reader.int16()
    reader.expect_end("OffsetDelete v0 response")
    return error_code, codes


@pytest.mark.timeout(60)
def test_kafka_python_admin_lists_describes_and_deletes_groups_and_offsets(broker, members):
    """KafkaAdminClient on a group with one live member: list_consumer_groups shows it,
    describe_consumer_groups shows it Stable with the member, its client id, subscription and
    assignment, list_consumer_group_offsets the committed offsets. A non-empty group cannot be
    deleted (NON_EMPTY_GROUP) nor can offsets of a subscribed topic (OffsetDelete:
    GROUP_SUBSCRIBED_TO_TOPIC). Once the member has left the group is Empty; OffsetDelete then
    removes one partition's offset, delete_consumer_groups removes the group (it is no longer
    listed and is described as Dead), and deleting it again gives GROUP_ID_NOT_FOUND."""
    topic, group = "admin", "admin-group"
    rdkafka.create_topic(broker.bootstrap, topic, 2)
    produce(broker, topic, 100, 2, "admin")
    member = members.thread("admin-member", topic, group)
    wait_until(lambda: member.committed() == {0: 50, 1: 50}, lambda: f"all committed: {member}")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert (group, "consumer") in admin.list_consumer_groups()
        [described] = admin.describe_consumer_groups([group])
        assert (described.error_code, described.group, described.state,
                described.protocol_type) == (0, group, "Stable", "consumer")
        assert described.protocol in ("range", "roundrobin")
        [info] = described.members
        assert info.client_id == "admin-member" and info.client_host == "/127.0.0.1"
        assert info.member_metadata.topics == [topic]
        assert info.member_assignment.assignment == [(topic, [0, 1])]
        offsets = admin.list_consumer_group_offsets(group)
        assert {tp.partition: m.offset for tp, m in offsets.items()} == {0: 50, 1: 50}
        assert admin.delete_consumer_groups([group]) == [(group, NonEmptyGroupError)]
        assert offset_delete(broker, group, topic, [0]) == (NONE, {0: GROUP_SUBSCRIBED_TO_TOPIC})

        member.stop()
        [described] = admin.describe_consumer_groups([group])
        assert described.state == "Empty" and described.members == []
        assert offset_delete(broker, group, topic, [0]) == (NONE, {0: NONE})
        offsets = admin.list_consumer_group_offsets(group)
        assert {tp.partition: m.offset for tp, m in offsets.items()} == {1: 50}

        assert admin.delete_consumer_groups([group]) == [(group, NoError)]
        assert group not in [g for g, _ in admin.list_consumer_groups()]
        [described] = admin.describe_consumer_groups([group])
        assert described.state == "Dead" and described.members == []
        assert admin.list_consumer_group_offsets(group) == {}
        assert admin.delete_consumer_groups([group]) == [(group, GroupIdNotFoundError)]
        assert offset_delete(broker, group, topic, [1]) == (GROUP_ID_NOT_FOUND, {})
    finally:
        admin.close()


@pytest.mark.timeout(60)
def test_confluent_admin_lists_describes_alters_and_deletes_groups(broker):
    """confluent-kafka's AdminClient (librdkafka) on a group with a live member: the group is
    listed as STABLE, described with its member, assignment and assignor, and its committed
    offsets listed. After the member closes, alter_consumer_group_offsets sets an offset of the
    empty group, list_consumer_group_offsets reads it back, and delete_consumer_groups removes
    the group, which no longer appears in the listing."""
    topic, group = "rd-admin", "rd-admin-group"
    rdkafka.create_topic(broker.bootstrap, topic, 2)
    produce(broker, topic, 40, 2, "rd-admin")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap}, logger=rdkafka.LOGGER)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "client.id": "rd-admin-member", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 300,
                         "fetch.wait.max.ms": group_member.FETCH_MAX_WAIT_MS},
                        logger=rdkafka.LOGGER)
    closed = False
    try:
        consumer.subscribe([topic])
        seen = []
        deadline = time.monotonic() + WAIT_S
        while len(seen) < 40 and time.monotonic() < deadline:
            seen += [m for m in consumer.consume(num_messages=100, timeout=0.2) if not m.error()]
        assert len(seen) == 40
        consumer.commit(asynchronous=False)

        listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
        assert not listed.errors
        [listing] = [g for g in listed.valid if g.group_id == group]
        assert listing.state == ConsumerGroupState.STABLE and not listing.is_simple_consumer_group
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor in ("range", "roundrobin")
        [info] = described.members
        assert info.client_id == "rd-admin-member"
        assert sorted(tp.partition for tp in info.assignment.topic_partitions) == [0, 1]
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
        assert {tp.partition: tp.offset for tp in offsets.topic_partitions} == {0: 20, 1: 20}

        consumer.close()
        closed = True
        altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            group, [RdTopicPartition(topic, 0, 7)])])[group].result(timeout=30)
        assert [(tp.partition, tp.offset, tp.error) for tp in altered.topic_partitions] == \
            [(0, 7, None)]
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
        assert {tp.partition: tp.offset for tp in offsets.topic_partitions} == {0: 7, 1: 20}
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert described.state == ConsumerGroupState.EMPTY and described.members == []

        assert admin.delete_consumer_groups([group])[group].result(timeout=30) is None
        listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
        assert group not in [g.group_id for g in listed.valid]
    finally:
        if not closed:
            consumer.close()


@pytest.mark.timeout(60)
def test_offsets_of_a_deleted_topic_go_and_a_deleted_group_stays_deleted_after_kill_9(broker):
    """Offsets committed without joining (generation -1, as a consumer using assign() does)
    for two topics: deleting one topic drops its offsets at once, and they stay dropped after a
    clean restart. Deleting the group (DeleteGroups is answered once its tombstones are
    durable) survives a `kill -9` at once after the answer: the group is neither listed nor
    has offsets when the broker is back."""
    group = "deletions-group"
    rdkafka.create_topic(broker.bootstrap, "doomed-topic", 2)
    rdkafka.create_topic(broker.bootstrap, "kept-topic", 1)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition("doomed-topic", 0): OffsetAndMetadata(3, "", -1),
                         TopicPartition("doomed-topic", 1): OffsetAndMetadata(5, "", -1),
                         TopicPartition("kept-topic", 0): OffsetAndMetadata(4, "", -1)})
    finally:
        consumer.close(autocommit=False)

    def offsets():
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            return {(tp.topic, tp.partition): m.offset
                    for tp, m in admin.list_consumer_group_offsets(group).items()}
        finally:
            admin.close()

    assert offsets() == {("doomed-topic", 0): 3, ("doomed-topic", 1): 5, ("kept-topic", 0): 4}
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.delete_topics(["doomed-topic"])
    finally:
        admin.close()
    assert offsets() == {("kept-topic", 0): 4}
    broker.restart()
    assert offsets() == {("kept-topic", 0): 4}

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert admin.delete_consumer_groups([group]) == [(group, NoError)]
    finally:
        admin.close()
    broker.kill9()
    broker.start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert group not in [g for g, _ in admin.list_consumer_groups()]
        assert admin.list_consumer_group_offsets(group) == {}
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------------
# The broker crashes under a live group


@pytest.mark.timeout(90)
def test_a_live_group_carries_on_across_a_broker_kill_9(broker, members):
    """Two kafka-python members read and commit everything; the broker is killed with
    SIGKILL and started again while they stay up. The group comes back from
    __consumer_offsets, the members carry on (rejoining if they must), and the messages sent
    after the restart are read too: across the crash every message is read exactly once,
    because every commit had been acknowledged, hence durable, before the crash."""
    topic, group = "crash", "crash-group"
    rdkafka.create_topic(broker.bootstrap, topic, 4)
    a = members.thread("a", topic, group)
    b = members.thread("b", topic, group)
    wait_until(lambda: split_between([a, b], 4), lambda: f"a split of 4 partitions: {a}; {b}")
    before = produce(broker, topic, 400, 4, "before")
    wait_until(lambda: received_all([a, b], before), lambda: f"all read: {a}; {b}")
    ends = {p: 100 for p in range(4)}
    wait_until(lambda: {**a.committed(), **b.committed()} == ends,
               lambda: f"all committed: {a}; {b}")

    broker.kill9()
    broker.start()
    assert committed_offsets(broker, group, topic) == ends
    after = produce(broker, topic, 400, 4, "after")
    wait_until(lambda: received_all([a, b], after), lambda: f"all read after: {a}; {b}")
    assert_exactly_once(a.records() + b.records(), {**before, **after}, "across the crash")
    assert not a.errors() and not b.errors(), (a, b)
