"""Malformed, oversized and hostile input on raw sockets: the broker rejects each connection in
bounded time, never hangs or crashes, and keeps serving everyone else."""

import random
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import rdkafka
import wire

REACTION_TIMEOUT_S = 10


def connect(broker):
    sock = socket.create_connection((broker.host, broker.kafka_port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def garbage_frame(seed, size):
    """A correctly sized frame whose contents are random bytes."""
    return struct.pack(">i", size) + random.Random(seed).randbytes(size)


# name -> (bytes to send, what must happen). "close": the broker closes the connection.
# "close or reply": it closes, or answers with a frame carrying the request's correlation id
# (the correlation id is the int32 at offset 4 of the request frame's payload).
CASES = {
    "random garbage in a frame (1)": (garbage_frame(1, 4096), "close or reply"),
    "random garbage in a frame (2)": (garbage_frame(2, 17), "close or reply"),
    "random garbage in a frame (3)": (garbage_frame(3, 65536), "close or reply"),
    "an HTTP request": (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "close"),
    "a TLS ClientHello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                          + random.Random(4).randbytes(500), "close"),
    "negative length prefix (-1)": (struct.pack(">i", -1) + b"\x00" * 16, "close"),
    "negative length prefix (-2^31)": (struct.pack(">i", -2**31) + b"\x00" * 16, "close"),
    "a frame claiming 2 GiB": (struct.pack(">i", 2**31 - 1) + b"\x00\x12\x00\x00", "close"),
    "a frame claiming 1 GiB": (struct.pack(">i", 2**30) + b"\x00" * 64, "close"),
    "an empty frame": (struct.pack(">i", 0), "close"),
    "a header cut short": (struct.pack(">i", 3) + b"\x00\x12\x00", "close"),
    "unknown api key 9999": (wire.request_frame(9999, 0, 4242), "close or reply"),
    "client id longer than the frame": (
        struct.pack(">i", 10) + struct.pack(">hhih", 18, 0, 4343, 30000), "close or reply"),
    "Metadata v1 with 2^31-1 topics": (
        wire.request_frame(wire.METADATA, 1, 4444, struct.pack(">i", 2**31 - 1)),
        "close or reply"),
    "Metadata v4 with 10^6 topics and 10 bytes": (
        wire.request_frame(wire.METADATA, 4, 4545, struct.pack(">i", 10**6) + b"\x00" * 10),
        "close or reply"),
    "Metadata v9 with a 2^32-2 compact array": (
        wire.request_frame(wire.METADATA, 9, 4646, wire.uvarint(2**32 - 1), flexible=True),
        "close or reply"),
}


def send(sock, data):
    """Send, tolerating a broker that already closed the connection (a fine reaction)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def check_reaction(sock, name, payload, expected):
    outcome, data = wire.await_close_or_frame(sock, REACTION_TIMEOUT_S)
    if outcome == "open":
        return f"{name}: connection still open after {REACTION_TIMEOUT_S} s (got {data[:32]!r})"
    if outcome == "frame":
        request_correlation_id = payload[8:12]
        if expected != "close or reply" or data[:4] != request_correlation_id:
            return f"{name}: unexpected answer {data[:64]!r}, expected the connection closed"
    return None


def test_hostile_connections_are_closed_and_others_keep_working(broker):
    bystander = connect(broker)  # a well-behaved client, connected before and throughout
    bystander.sendall(wire.api_versions_request(0, correlation_id=1))
    assert wire.decode_api_versions_response(wire.read_frame(bystander), 0).error_code == 0

    sockets = {name: connect(broker) for name in CASES}
    for name, (payload, _) in CASES.items():
        send(sockets[name], payload)
    # Truncated frames: 10 of 100 announced bytes, then the client goes away.
    truncated_closed = connect(broker)
    truncated = struct.pack(">i", 100) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00"
    send(truncated_closed, truncated)
    truncated_closed.close()
    truncated_half = connect(broker)
    send(truncated_half, truncated)
    truncated_half.shutdown(socket.SHUT_WR)

    with ThreadPoolExecutor(max_workers=len(CASES) + 1) as pool:
        futures = [pool.submit(check_reaction, sockets[name], name, payload, expected)
                   for name, (payload, expected) in CASES.items()]
        futures.append(pool.submit(check_reaction, truncated_half,
                                   "10 of 100 bytes, then EOF", b"", "close"))
        problems = [f.result() for f in futures]
    for sock in [*sockets.values(), truncated_half]:
        sock.close()
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)

    assert broker.alive(), f"the broker died (exit code {broker.proc.poll()})"
    bystander.sendall(wire.api_versions_request(3, correlation_id=2))
    answer = wire.decode_api_versions_response(wire.read_frame(bystander), 3)
    assert (answer.correlation_id, answer.error_code) == (2, 0)
    bystander.close()

    delivered = rdkafka.produce(broker.bootstrap, "after-the-storm",
                                [{"value": f"still here {i}".encode()} for i in range(100)])
    assert [d.offset for d in delivered] == list(range(100))
    records = rdkafka.read_partitions(broker.bootstrap, "after-the-storm", {0: 100})[0]
    assert [r.value for r in records] == [f"still here {i}".encode() for i in range(100)]
    assert broker.alive()
    assert "panicked" not in broker.log_text(), broker.log_tail()


def test_many_connections_that_vanish_at_once_leave_the_broker_serving(broker):
    for _ in range(5):
        batch = [connect(broker) for _ in range(100)]
        for i, sock in enumerate(batch):
            if i % 2:
                send(sock, wire.api_versions_request(0, correlation_id=i)[:7])
            # RST instead of FIN: abortive close with SO_LINGER 0.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    answer = wire.api_versions(broker.host, broker.kafka_port, version=0, correlation_id=9)
    assert (answer.correlation_id, answer.error_code) == (9, 0)
    assert broker.alive()


def test_unsupported_api_versions_version_gets_error_35_in_v0_format_and_connection_stays(broker):
    """Kafka answers an ApiVersions request of a version it does not know (here v99, sent with
    the flexible header v2 as a newer client would) with UNSUPPORTED_VERSION in the v0 response
    format, listing at least ApiVersions' own supported range (KIP-511); the client then retries
    on the same connection with a version both support."""
    with connect(broker) as sock:
        sock.settimeout(REACTION_TIMEOUT_S)
        sock.sendall(wire.api_versions_request(99, correlation_id=99))
        answer = wire.decode_api_versions_response(wire.read_frame(sock), 0)
        assert answer.correlation_id == 99
        assert answer.error_code == wire.UNSUPPORTED_VERSION, answer
        assert wire.API_VERSIONS in answer.api_keys, answer
        low, high = answer.api_keys[wire.API_VERSIONS]
        assert low == 0 and high >= 3, answer

        sock.sendall(wire.api_versions_request(high, correlation_id=100))
        retry = wire.decode_api_versions_response(wire.read_frame(sock), high)
        assert (retry.correlation_id, retry.error_code) == (100, 0)


@pytest.mark.parametrize("acks", [-1, 1])
def test_a_batch_with_a_bad_crc_is_refused_with_corrupt_message_and_not_stored(broker, acks):
    topic = "crc-checked"
    rdkafka.create_topic(broker.bootstrap, topic, partitions=1)
    now_ms = int(time.time() * 1000)
    with connect(broker) as sock:
        sock.settimeout(REACTION_TIMEOUT_S)
        bad = wire.record_batch([b"bad-1", b"bad-2"], now_ms, corrupt_crc=True)
        sock.sendall(wire.produce_request_v3(1, topic, 0, bad, acks=acks))
        correlation_id, results = wire.decode_produce_response_v3(wire.read_frame(sock))
        assert correlation_id == 1
        assert results[(topic, 0)][0] == wire.CORRUPT_MESSAGE, results

        # The same connection still works, and the log took nothing from the bad batch.
        good = wire.record_batch([b"good-1", b"good-2"], now_ms)
        sock.sendall(wire.produce_request_v3(2, topic, 0, good, acks=acks))
        correlation_id, results = wire.decode_produce_response_v3(wire.read_frame(sock))
        assert (correlation_id, results) == (2, {(topic, 0): (0, 0)})

    records = rdkafka.read_partitions(broker.bootstrap, topic, {0: 2})[0]
    assert [(r.offset, r.value) for r in records] == [(0, b"good-1"), (1, b"good-2")]
    assert rdkafka.watermarks(broker.bootstrap, topic, [0]) == {0: (0, 2)}
