"""confluent-kafka (librdkafka, bundled in the wheel) against the real broker."""

import struct
from collections import Counter

from confluent_kafka import TIMESTAMP_CREATE_TIME

import rdkafka

MESSAGES = 100_000
KEYS = 1000


def test_idempotent_producer_100k_keyed_messages_read_back_once_each_in_partition_order(broker):
    topic = "keyed"
    rdkafka.create_topic(broker.bootstrap, topic, partitions=4)
    messages = [{"key": f"key-{i % KEYS}".encode(), "value": f"msg-{i}".encode()}
                for i in range(MESSAGES)]
    delivered = rdkafka.produce(broker.bootstrap, topic, messages,
                                {"enable.idempotence": True, "acks": "all"}, flush_timeout_s=120)

    # Delivery reports: offsets of each partition are exactly 0..n-1, one key stays on one
    # partition, and the 4 partitions all got some of the keys.
    per_partition = Counter(d.partition for d in delivered)
    assert sorted(per_partition) == [0, 1, 2, 3], f"partitions used: {per_partition}"
    for partition, count in per_partition.items():
        offsets = sorted(d.offset for d in delivered if d.partition == partition)
        assert offsets == list(range(count)), f"partition {partition}: offsets not 0..{count - 1}"
    key_partitions = {}
    for message, d in zip(messages, delivered):
        assert key_partitions.setdefault(message["key"], d.partition) == d.partition

    assert rdkafka.watermarks(broker.bootstrap, topic, range(4)) == {
        p: (0, per_partition[p]) for p in range(4)}

    records = rdkafka.read_partitions(broker.bootstrap, topic, dict(per_partition), timeout_s=120)

    seen = Counter((r.key, r.value) for rs in records.values() for r in rs)
    assert sum(seen.values()) == MESSAGES
    duplicated = [kv for kv, n in seen.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} messages read more than once: {duplicated[:5]}"
    assert set(seen) == {(m["key"], m["value"]) for m in messages}

    where = {m["value"]: d for m, d in zip(messages, delivered)}
    for partition, rs in records.items():
        assert [r.offset for r in rs] == list(range(per_partition[partition])), (
            f"partition {partition}: offsets read are not contiguous from 0")
        last_index = {}
        for r in rs:
            assert where[r.value] == (partition, r.offset), (
                f"{r.value!r} read at {partition}/{r.offset}, "
                f"delivery report said {where[r.value]}")
            index = int(r.value.split(b"-")[1])
            assert index > last_index.get(r.key, -1), (
                f"partition {partition}: {r.value!r} of {r.key!r} read after message "
                f"{last_index[r.key]} of the same key")
            last_index[r.key] = index


def test_metadata_lists_the_broker_and_4_partitions_led_by_node_0(broker):
    rdkafka.create_topic(broker.bootstrap, "four", partitions=4)
    cluster = rdkafka.metadata(broker.bootstrap)
    assert {b.id: (b.host, b.port) for b in cluster.brokers.values()} == {
        0: ("127.0.0.1", broker.kafka_port)}
    topic = cluster.topics["four"]
    assert topic.error is None
    assert sorted(topic.partitions) == [0, 1, 2, 3]
    for partition in topic.partitions.values():
        assert partition.error is None
        assert (partition.leader, partition.replicas, partition.isrs) == (0, [0], [0])


CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_codecs(data_dir, topic):
    """Compression codec of every batch in the partition's segment files, from the on-disk
    format given in README.md: segments under <data-dir>/<topic>-<partition>/ hold Kafka v2
    batches back to back (attributes bits 0-2 = codec), possibly followed by zeros."""
    dirs = [d for d in data_dir.rglob(f"{topic}-0") if d.is_dir()]
    assert len(dirs) == 1, f"expected one directory {topic}-0 under {data_dir}, found {dirs}"
    codecs = []
    for segment in sorted(dirs[0].glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            _, batch_length = struct.unpack_from(">qi", data, pos)
            if batch_length == 0:
                break
            assert data[pos + 16] == 2, f"{segment}: magic {data[pos + 16]} at {pos}"
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            codecs.append(attributes & 0x7)
            pos += 12 + batch_length
    return codecs


def test_every_compression_codec_round_trips_records_exactly_and_is_stored_as_sent(broker):
    """Keys, null and empty values, headers and timestamps come back exactly with each codec,
    and the broker stores the producer's compressed batches (it must advertise Produce from v0:
    librdkafka silently stops compressing when the advertised minimum is 3)."""
    base_ms = 1_700_000_000_000
    messages = []
    for i in range(300):
        message = {"value": f"value {i} ".encode() * 20, "timestamp": base_ms + i}
        if i % 3:
            message["key"] = f"k{i % 7}".encode()
        if i % 50 == 7:
            message["value"] = None
        if i % 50 == 8:
            message["value"] = b""
        if i % 4 == 0:
            message["headers"] = [("trace", f"t-{i}".encode()), ("empty", b""), ("null", None)]
        messages.append(message)

    for codec, codec_id in CODECS.items():
        topic = f"compressed-{codec}"
        delivered = rdkafka.produce(broker.bootstrap, topic, messages,
                                    {"compression.type": codec, "linger.ms": 100})
        assert [d.offset for d in delivered] == list(range(len(messages)))
        records = rdkafka.read_partitions(broker.bootstrap, topic, {0: len(messages)})[0]
        assert [r.offset for r in records] == list(range(len(messages)))
        for message, record in zip(messages, records):
            assert record.key == message.get("key"), f"{codec}: key at {record.offset}"
            assert record.value == message["value"], f"{codec}: value at {record.offset}"
            assert record.headers == message.get("headers"), f"{codec}: headers at {record.offset}"
            assert record.timestamp == (TIMESTAMP_CREATE_TIME, message["timestamp"]), (
                f"{codec}: timestamp at {record.offset}")
        codecs = stored_codecs(broker.data_dir, topic)
        assert codecs and set(codecs) == {codec_id}, (
            f"{codec}: batches stored with codecs {codecs}, expected all {codec_id}")
