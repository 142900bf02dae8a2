"""confluent-kafka (librdkafka) helpers shared by the tests.

`produce` waits for every delivery report and fails on any error; `read_partitions` reads
partitions from the beginning with `assign()`, so no consumer-group coordinator is involved.
"""

import logging
import time
from collections import namedtuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Delivered = namedtuple("Delivered", "partition offset")
Record = namedtuple("Record", "partition offset key value headers timestamp")

GROUP_ID = "ringlog-client-tests"  # required by the consumer's config; no group is joined
# librdkafka's own log lines go through Python logging, so pytest shows them with a failure
# instead of printing them to stderr, even from a client a failed test left behind.
LOGGER = logging.getLogger("librdkafka")


def create_topic(bootstrap, name, partitions, timeout_s=30):
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=LOGGER)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout_s, request_timeout=timeout_s)
    futures[name].result(timeout=timeout_s)


def metadata(bootstrap, topic=None, timeout_s=10):
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=LOGGER)
    return admin.list_topics(topic, timeout=timeout_s)


def produce(bootstrap, topic, messages, config=None, flush_timeout_s=60):
    """Produce each message (a dict of Producer.produce keyword arguments: key, value,
    headers, timestamp, partition) and return one Delivered per message, in input order.
    Fails unless every message got a delivery report without error."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         **(config or {})}, logger=LOGGER)
    delivered = []
    errors = []

    def report(index):
        def on_delivery(err, msg):
            if err is not None:
                errors.append((index, err))
            else:
                delivered[index] = Delivered(msg.partition(), msg.offset())
        return on_delivery

    for index, message in enumerate(messages):
        delivered.append(None)
        while True:
            try:
                producer.produce(topic, on_delivery=report(index), **message)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(flush_timeout_s)
    assert remaining == 0, f"{remaining} messages still undelivered after {flush_timeout_s} s"
    assert not errors, f"{len(errors)} delivery errors, first ones: {errors[:5]}"
    missing = [i for i, d in enumerate(delivered) if d is None]
    assert not missing, f"{len(missing)} messages got no delivery report: {missing[:10]}"
    return delivered


def consumer(bootstrap, **config):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP_ID,
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     **config}, logger=LOGGER)


def watermarks(bootstrap, topic, partitions, timeout_s=10):
    """{partition: (low, high)} as the broker reports them (ListOffsets)."""
    client = consumer(bootstrap)
    try:
        return {p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s,
                                                cached=False)
                for p in partitions}
    finally:
        client.close()


def read_partitions(bootstrap, topic, ends, timeout_s=60):
    """Read partitions from the beginning until each partition p has delivered offset
    ends[p] - 1. Returns {partition: [Record, ...]} in the order consumed."""
    client = consumer(bootstrap)
    records = {p: [] for p in ends}
    pending = {p for p, end in ends.items() if end > 0}
    errors = []
    try:
        client.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in client.consume(num_messages=10000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    assert not err.fatal(), f"fatal consumer error: {err}"
                    errors.append(err)
                    continue
                partition = msg.partition()
                timestamp = msg.timestamp()
                records[partition].append(Record(partition, msg.offset(), msg.key(), msg.value(),
                                                 msg.headers(), timestamp))
                if msg.offset() + 1 >= ends[partition]:
                    pending.discard(partition)
    finally:
        client.close()
    counts = {p: len(records[p]) for p in sorted(pending)}
    assert not pending, (
        f"timed out after {timeout_s} s reading {topic}: got {counts} messages from partitions "
        f"{sorted(pending)}, expected up to offsets {ends}; errors seen: {errors[:5]}")
    return records
