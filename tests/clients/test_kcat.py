"""kcat (Debian's build, on Debian's librdkafka) against the real broker."""

import json
import os
import re
import shutil
import subprocess

import pytest

from sample_text import sample_lines, write_lines


def kcat_binary():
    path = os.environ.get("KCAT") or shutil.which("kcat") or shutil.which("kafkacat")
    if not path:
        pytest.fail("kcat not found: run ./scripts/client-tests.sh as root, or "
                    "`apt-get install kcat` (kafkacat on older Debian)", pytrace=False)
    return path


def kcat(broker, *args, timeout_s=60):
    cmd = [kcat_binary(), "-b", broker.bootstrap, *args]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited with {result.returncode}\n"
        f"stderr:\n{result.stderr.decode(errors='replace')}")
    return result.stdout


def test_every_line_of_a_file_is_produced_and_consumed_back_identically(broker, tmp_path):
    lines = sample_lines(1000)
    path = tmp_path / "lines.txt"
    write_lines(path, lines)
    kcat(broker, "-P", "-t", "lines", "-l", str(path))

    # kcat -P skips empty lines: every other line is one message.
    expected = [line.encode() for line in lines if line]
    out = kcat(broker, "-C", "-t", "lines", "-e", "-o", "beginning", "-q", "-f", "%s\\n")
    assert out == b"".join(value + b"\n" for value in expected)

    out = kcat(broker, "-C", "-t", "lines", "-e", "-o", "beginning", "-q", "-f", "%p %o\\n")
    assert out.decode().splitlines() == [f"0 {offset}" for offset in range(len(expected))]


def test_keyed_lines_come_back_with_their_keys(broker, tmp_path):
    pairs = [(f"key-{i % 13}", f"value {i}: with = and : inside") for i in range(500)]
    pairs += [("empty-value", ""), ("utf-8 ключ", "значение 🚀")]
    path = tmp_path / "keyed.txt"
    path.write_bytes(b"".join(f"{k}:{v}\n".encode() for k, v in pairs))
    kcat(broker, "-P", "-t", "keyed", "-K:", "-l", str(path))

    out = kcat(broker, "-C", "-t", "keyed", "-e", "-o", "beginning", "-q", "-f", "%k=%s\\n")
    assert out.decode().splitlines() == [f"{k}={v}" for k, v in pairs]


def test_metadata_list_shows_the_broker_and_the_topics(broker, tmp_path):
    path = tmp_path / "one.txt"
    path.write_bytes(b"hello\n")
    for topic in ("alpha", "beta"):
        kcat(broker, "-P", "-t", topic, "-l", str(path))

    text = kcat(broker, "-L").decode()
    assert re.search(rf"^ 1 brokers:\n  broker 0 at 127\.0\.0\.1:{broker.kafka_port}\b", text,
                     re.M), text
    for topic in ("alpha", "beta"):
        assert re.search(rf'^  topic "{topic}" with 1 partitions:\n'
                         r"    partition 0, leader 0, replicas: 0, isrs: 0$", text, re.M), text

    listing = json.loads(kcat(broker, "-L", "-J"))
    assert [(b["id"], b["name"]) for b in listing["brokers"]] == [
        (0, f"127.0.0.1:{broker.kafka_port}")]
    topics = {t["topic"]: t for t in listing["topics"]}
    for topic in ("alpha", "beta"):
        assert "error" not in topics[topic], topics[topic]
        assert [(p["partition"], p["leader"]) for p in topics[topic]["partitions"]] == [(0, 0)]
