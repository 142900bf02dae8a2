"""Data and offsets survive a clean restart (SIGTERM) and a crash (SIGKILL) of the broker."""

import rdkafka

TOPIC = "durable"


def messages(start, count):
    return [{"key": f"k{i % 10}".encode(), "value": f"message {i}".encode()}
            for i in range(start, start + count)]


def produce_at(broker, start, count):
    """Produce messages start..start+count-1 with acks=all; they must land at those offsets."""
    delivered = rdkafka.produce(broker.bootstrap, TOPIC, messages(start, count), {"acks": "all"})
    assert [(d.partition, d.offset) for d in delivered] == [
        (0, offset) for offset in range(start, start + count)]


def assert_log_holds(broker, count):
    """Partition 0 holds exactly messages 0..count-1 at offsets 0..count-1."""
    assert rdkafka.watermarks(broker.bootstrap, TOPIC, [0]) == {0: (0, count)}
    records = rdkafka.read_partitions(broker.bootstrap, TOPIC, {0: count})[0]
    assert [(r.offset, r.key, r.value) for r in records] == [
        (offset, m["key"], m["value"]) for offset, m in enumerate(messages(0, count))]


def assert_topic_known(broker):
    topic = rdkafka.metadata(broker.bootstrap, TOPIC).topics[TOPIC]
    assert topic.error is None and sorted(topic.partitions) == [0]


def test_messages_and_offsets_survive_a_clean_restart(broker):
    rdkafka.create_topic(broker.bootstrap, TOPIC, partitions=1)
    produce_at(broker, 0, 500)

    broker.restart()  # asserts exit code 0 after SIGTERM
    assert_topic_known(broker)
    assert_log_holds(broker, 500)
    produce_at(broker, 500, 500)
    assert_log_holds(broker, 1000)

    broker.restart()
    assert_log_holds(broker, 1000)


def test_messages_acknowledged_with_acks_all_survive_kill_9(broker):
    rdkafka.create_topic(broker.bootstrap, TOPIC, partitions=1)
    produce_at(broker, 0, 500)

    broker.kill9()
    broker.start()
    assert_topic_known(broker)
    assert_log_holds(broker, 500)
    produce_at(broker, 500, 500)

    broker.kill9()
    broker.start()
    assert_log_holds(broker, 1000)
    produce_at(broker, 1000, 500)
    assert_log_holds(broker, 1500)
