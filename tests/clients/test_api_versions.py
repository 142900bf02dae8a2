"""ApiVersions on the raw wire: the handshake every client starts with."""

import socket

import wire

# What the clients of this suite can speak (kafka-python 2.3.3's highest versions; librdkafka
# speaks at least these): the broker's advertised range must overlap each.
KAFKA_PYTHON_MAX = {0: 8, 1: 10, 2: 5, 3: 8, 18: 4, 19: 3, 22: 1}
NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 18: "ApiVersions",
         19: "CreateTopics", 22: "InitProducerId"}


def test_api_versions_v0_to_v3_answer_in_their_own_format_with_a_v0_header(broker):
    """Versions 0-3 are what clients send first; each answer is exactly one response of the
    version asked (v3 flexible: compact array and tagged fields) with the v0 response header,
    on one connection, answers in request order."""
    with socket.create_connection((broker.host, broker.kafka_port), timeout=10) as sock:
        sock.settimeout(10)
        for version in range(4):
            sock.sendall(wire.api_versions_request(version, correlation_id=100 + version))
        answers = [wire.decode_api_versions_response(wire.read_frame(sock), version)
                   for version in range(4)]
    for version, answer in enumerate(answers):
        assert answer.correlation_id == 100 + version
        assert answer.error_code == 0, answer
        assert answer.api_keys == answers[0].api_keys, f"v{version} lists other APIs than v0"
        if version >= 1:
            assert answer.throttle_time_ms == 0


def test_advertised_ranges_fit_the_clients(broker):
    keys = wire.api_versions(broker.host, broker.kafka_port, version=3).api_keys
    for key, (low, high) in keys.items():
        assert 0 <= low <= high, f"api_key {key}: range {low}..{high}"
    low, high = keys[wire.API_VERSIONS]
    assert low == 0 and high >= 3, f"ApiVersions must cover 0..3, advertised {low}..{high}"
    # librdkafka silently disables compression when Produce's advertised minimum is above 0.
    assert keys[wire.PRODUCE][0] == 0, f"Produce advertised from v{keys[wire.PRODUCE][0]}"
    for key, client_max in KAFKA_PYTHON_MAX.items():
        assert key in keys, f"{NAMES[key]} (api_key {key}) is not advertised"
        assert keys[key][0] <= client_max, (
            f"{NAMES[key]}: advertised {keys[key]}, kafka-python speaks up to v{client_max}")
