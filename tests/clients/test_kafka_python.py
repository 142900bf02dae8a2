"""kafka-python (a pure-Python client with its own protocol code) against the real broker."""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import NewTopic

from sample_text import sample_lines, write_lines


def read_back(bootstrap, topic, count):
    """The classic tutorial consumer: subscribe by name, no group, from the earliest offset."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    try:
        received = []
        for message in consumer:
            received.append(message)
            if len(received) == count:
                break
        # Nothing may follow the last message produced.
        extra = consumer.poll(timeout_ms=500)
        return received, [m for batch in extra.values() for m in batch]
    finally:
        consumer.close()


def test_tutorial_flow_every_line_of_a_file_comes_back_in_order(broker, tmp_path):
    lines = sample_lines(1000)
    path = tmp_path / "lines.txt"
    write_lines(path, lines)

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="tutorial-admin")
    try:
        admin.create_topics([NewTopic(name="test", num_partitions=1, replication_factor=1)],
                            timeout_ms=30000)
        # kafka-python's admin asks Metadata v8 for authorized operations and maps every bit
        # to an ACL operation: the broker must answer a real bitfield (Kafka without an
        # authorizer: every operation the resource supports), not -2^31 (bit 31).
        assert "test" in admin.list_topics()
        (described,) = admin.describe_topics(["test"])
        assert described["error_code"] == 0
        assert [p["partition"] for p in described["partitions"]] == [0]
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        with open(path, "rb") as file:
            values = file.read().split(b"\n")[:-1]
        assert len(values) == 1000
        futures = [producer.send("test", value) for value in values]
        producer.flush(timeout=60)
        offsets = [future.get(timeout=30).offset for future in futures]
    finally:
        producer.close(timeout=10)
    assert offsets == list(range(1000)), "offsets must be 0..999 in send order"

    received, extra = read_back(broker.bootstrap, "test", 1000)
    assert [m.value for m in received] == [line.encode() for line in lines]
    assert [m.offset for m in received] == list(range(1000))
    assert all(m.key is None and m.partition == 0 for m in received)
    assert extra == [], f"{len(extra)} messages beyond the 1000 produced"

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        assert "test" in consumer.topics()
        assert consumer.partitions_for_topic("test") == {0}
    finally:
        consumer.close()


def test_producing_to_an_unknown_topic_creates_it_with_one_partition(broker):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        record = producer.send("created-on-first-use", b"first").get(timeout=60)
    finally:
        producer.close(timeout=10)
    assert (record.topic, record.partition, record.offset) == ("created-on-first-use", 0, 0)

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        assert "created-on-first-use" in consumer.topics()
        assert consumer.partitions_for_topic("created-on-first-use") == {0}
    finally:
        consumer.close()
    received, extra = read_back(broker.bootstrap, "created-on-first-use", 1)
    assert [m.value for m in received] == [b"first"] and extra == []


def test_offsets_for_times_and_beginning_and_end_offsets(broker):
    """ListOffsets: by timestamp it returns the first *record* (not batch) whose timestamp is at
    least the one asked, with that record's timestamp; earliest is 0, latest is the log end."""
    topic = "timestamps"
    count = 60
    base_ms = int(time.time() * 1000) - 120_000  # in the past: no broker may reject it as future
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    try:
        # Sent together, so they share batches: record offsets differ from batch base offsets.
        futures = [producer.send(topic, f"at {i}".encode(), timestamp_ms=base_ms + 1000 * i)
                   for i in range(count)]
        producer.flush(timeout=60)
        assert [f.get(timeout=30).offset for f in futures] == list(range(count))
    finally:
        producer.close(timeout=10)

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: count}

        def offset_at(timestamp_ms):
            found = consumer.offsets_for_times({tp: timestamp_ms})[tp]
            return None if found is None else (found.offset, found.timestamp)

        assert offset_at(base_ms - 5000) == (0, base_ms)
        assert offset_at(base_ms) == (0, base_ms)
        assert offset_at(base_ms + 10_000) == (10, base_ms + 10_000)
        assert offset_at(base_ms + 10_001) == (11, base_ms + 11_000)
        assert offset_at(base_ms + 37_500) == (38, base_ms + 38_000)
        assert offset_at(base_ms + 1000 * (count - 1)) == (count - 1, base_ms + 1000 * (count - 1))
        assert offset_at(base_ms + 1000 * count) is None, "past the newest record: no offset"
    finally:
        consumer.close()


def test_a_timestamp_outside_the_topics_window_is_refused_with_invalid_timestamp(broker):
    """message.timestamp.before.max.ms / after.max.ms (KIP-937): a record timestamped too far
    from the broker's clock is refused with INVALID_TIMESTAMP and never stored; the others are."""
    topic = "timestamp-window"
    hour_ms = 3_600_000
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={
            "message.timestamp.before.max.ms": str(hour_ms),
            "message.timestamp.after.max.ms": str(hour_ms),
        })])
    finally:
        admin.close()
    now_ms = int(time.time() * 1000)
    # One request per record (no lingering): each is judged alone.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, retries=0,
                             max_in_flight_requests_per_connection=1)
    try:
        good = producer.send(topic, b"now", timestamp_ms=now_ms).get(timeout=30)
        outcomes = {}
        for name, timestamp_ms in [("old", 1_000_000_000_000), ("future", now_ms + 2 * hour_ms)]:
            try:
                producer.send(topic, name.encode(), timestamp_ms=timestamp_ms).get(timeout=30)
                outcomes[name] = "accepted"
            except kafka_errors.KafkaError as error:
                outcomes[name] = type(error).__name__
        last = producer.send(topic, b"later", timestamp_ms=now_ms + 1).get(timeout=30)
    finally:
        producer.close(timeout=10)
    assert outcomes == {"old": "InvalidTimestampError", "future": "InvalidTimestampError"}
    assert (good.offset, last.offset) == (0, 1)

    received, extra = read_back(broker.bootstrap, topic, 2)
    assert extra == []
    assert [(m.value, m.timestamp) for m in received] == [(b"now", now_ms), (b"later", now_ms + 1)]


def test_a_log_append_time_topic_stamps_records_with_the_brokers_clock(broker):
    """message.timestamp.type=LogAppendTime: the producer learns the broker's append time, and
    consumers read it as every record's timestamp, of type LogAppendTime, whatever the producer
    set."""
    topic = "append-time"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1,
                                      topic_configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()
    producer_ms = 1_000_000_000_000  # 2001: nowhere near now
    before_ms = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
    try:
        futures = [producer.send(topic, f"m{i}".encode(), timestamp_ms=producer_ms + i)
                   for i in range(5)]
        producer.flush(timeout=60)
        metadata = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    after_ms = int(time.time() * 1000)
    append_times = {m.timestamp for m in metadata}
    assert len(append_times) == 1, "one batch, one append time"
    append_ms = append_times.pop()
    assert before_ms - 1000 <= append_ms <= after_ms + 1000

    received, extra = read_back(broker.bootstrap, topic, 5)
    assert extra == []
    assert [m.value for m in received] == [f"m{i}".encode() for i in range(5)]
    assert {(m.timestamp, m.timestamp_type) for m in received} == {(append_ms, 1)}
