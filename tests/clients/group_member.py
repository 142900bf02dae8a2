"""One kafka-python consumer-group member that reports everything it does, for test_groups.py.

`run_member` subscribes a KafkaConsumer (no auto-commit) to a topic in a group and loops until
told to stop: poll a batch, report its records, commit exactly the offsets after them
synchronously, report the commit. Assignments and revocations are reported from the rebalance
listener. Every report is a dict with an "event" key:

    {"event": "assigned", "partitions": [0, 2]}
    {"event": "revoked", "partitions": [0, 2]}
    {"event": "records", "records": [[partition, offset, value], ...]}
    {"event": "committed", "offsets": {"0": 17, "2": 5}}    # next offset to read, per partition
    {"event": "closed"}
    {"event": "error", "error": "..."}

A batch's records are always reported before its commit is sent, so a member killed at any
moment has reported at least what it committed.

Run as a script it does the same and prints one JSON line per report on stdout, flushed at once,
until SIGTERM or SIGKILL (the tests kill it to simulate a crashed consumer):

    python group_member.py --bootstrap 127.0.0.1:9092 --topic t --group g
"""

import argparse
import json
import signal
import sys
import threading

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

POLL_TIMEOUT_MS = 100
MAX_RECORDS_PER_POLL = 50
# A short long poll: a fetch still in flight when the broker gets SIGTERM delays its exit
# (see test_groups.py, test_sigterm_with_a_fetch_spanning_both_shards_in_flight...).
FETCH_MAX_WAIT_MS = 100


class _Listener(ConsumerRebalanceListener):
    def __init__(self, emit):
        self.emit = emit

    def on_partitions_revoked(self, revoked):
        self.emit({"event": "revoked", "partitions": sorted(tp.partition for tp in revoked)})

    def on_partitions_assigned(self, assigned):
        self.emit({"event": "assigned", "partitions": sorted(tp.partition for tp in assigned)})


def run_member(bootstrap, topic, group, emit, stop, session_timeout_ms=3000,
               heartbeat_interval_ms=300, max_poll_interval_ms=20000, client_id=None,
               pause_ms=0, group_instance_id=None):
    """Consume `topic` in `group` until `stop` (a threading.Event) is set, then close the
    consumer (which sends LeaveGroup). `emit` receives each report (see the module doc).
    `pause_ms` is slept after each committed batch, to slow a member down; `group_instance_id`
    makes it a static member (KIP-345)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, client_id=client_id or f"member-{group}",
        group_instance_id=group_instance_id,
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms,
        max_poll_interval_ms=max_poll_interval_ms, request_timeout_ms=30000,
        max_poll_records=MAX_RECORDS_PER_POLL, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    try:
        consumer.subscribe([topic], listener=_Listener(emit))
        while not stop.is_set():
            batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            records = [record for batch in batches.values() for record in batch]
            if not records:
                continue
            emit({"event": "records",
                  "records": [[r.partition, r.offset, r.value.decode()] for r in records]})
            next_offsets = {}
            for record in records:
                next_offsets[record.partition] = max(next_offsets.get(record.partition, 0),
                                                     record.offset + 1)
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                             for p, o in next_offsets.items()})
            emit({"event": "committed", "offsets": {str(p): o for p, o in next_offsets.items()}})
            if pause_ms:
                stop.wait(pause_ms / 1000)
    finally:
        consumer.close(autocommit=False)
        emit({"event": "closed"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--session-timeout-ms", type=int, default=3000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=300)
    parser.add_argument("--client-id")
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--group-instance-id")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()

    def emit(report):
        with lock:
            sys.stdout.write(json.dumps(report) + "\n")
            sys.stdout.flush()

    try:
        run_member(args.bootstrap, args.topic, args.group, emit, stop,
                   session_timeout_ms=args.session_timeout_ms,
                   heartbeat_interval_ms=args.heartbeat_interval_ms, client_id=args.client_id,
                   pause_ms=args.pause_ms, group_instance_id=args.group_instance_id)
    except Exception as exc:  # reported, so that the test shows it
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise


if __name__ == "__main__":
    main()
