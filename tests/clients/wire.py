"""Raw Kafka wire protocol, just enough to probe a broker without a client library.

Per https://kafka.apache.org/protocol and the message specs in Apache Kafka's
clients/src/main/resources/common/message/ (ApiVersionsRequest.json, ApiVersionsResponse.json,
RequestHeader.json, ResponseHeader.json):

- every frame is an int32 big-endian size followed by that many bytes;
- request header v1: api_key int16, api_version int16, correlation_id int32,
  client_id nullable string (int16 length, -1 for null);
  request header v2 (flexible request versions) adds tagged fields (an unsigned varint count);
- response header v0: correlation_id int32; v1 adds tagged fields. ApiVersions responses always
  use header v0, even at the flexible versions (3+), so that a client can read a response to a
  version the broker does not support;
- ApiVersions request v0-2 has an empty body; v3+ (flexible) has client_software_name and
  client_software_version as compact strings, then tagged fields;
- ApiVersions response v0: error_code int16, api_keys array (int32 count) of
  (api_key int16, min_version int16, max_version int16); v1+ appends throttle_time_ms int32;
  v3+ is flexible: compact array (unsigned varint count + 1), tagged fields after each entry,
  throttle_time_ms, then tagged fields.
"""

import socket
import struct
import time

PRODUCE = 0
METADATA = 3
API_VERSIONS = 18
CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35


def uvarint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def nullable_string(text):
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def compact_string(text):
    data = text.encode()
    return uvarint(len(data) + 1) + data


def request_frame(api_key, api_version, correlation_id, body=b"", client_id="ringlog-tests",
                  flexible=False):
    """A whole request frame: size prefix, header v1 (v2 when flexible), body."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + nullable_string(client_id)
    if flexible:
        header += uvarint(0)  # no tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(version, correlation_id):
    """ApiVersions request frame; versions 3 and up are flexible (header v2, compact body)."""
    if version >= 3:
        body = compact_string("ringlog-tests") + compact_string("1.0") + uvarint(0)
        return request_frame(API_VERSIONS, version, correlation_id, body, flexible=True)
    return request_frame(API_VERSIONS, version, correlation_id)


class Reader:
    """Strict big-endian reader over one response payload; raises ValueError when short."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def take(self, count):
        if count < 0 or self.pos + count > len(self.data):
            raise ValueError(
                f"response truncated: need {count} bytes at {self.pos}, have {len(self.data)}")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        value = 0
        for shift in range(0, 35, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ValueError("unsigned varint longer than 5 bytes")

    def skip_tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())

    def expect_end(self, what):
        if self.pos != len(self.data):
            raise ValueError(
                f"{what}: {len(self.data) - self.pos} unexpected trailing bytes "
                f"(parsed {self.pos} of {len(self.data)})")


class ApiVersionsResponse:
    def __init__(self, correlation_id, error_code, api_keys, throttle_time_ms):
        self.correlation_id = correlation_id
        self.error_code = error_code
        self.api_keys = api_keys  # {api_key: (min_version, max_version)}
        self.throttle_time_ms = throttle_time_ms

    def __repr__(self):
        return (f"ApiVersionsResponse(correlation_id={self.correlation_id}, "
                f"error_code={self.error_code}, api_keys={self.api_keys}, "
                f"throttle_time_ms={self.throttle_time_ms})")


def decode_api_versions_response(payload, version):
    """Decode a whole ApiVersions response payload (after the size prefix) of the given version.

    The header is v0 at every version. Raises ValueError unless the payload is exactly one
    well-formed response of that version.
    """
    reader = Reader(payload)
    correlation_id = reader.int32()
    error_code = reader.int16()
    flexible = version >= 3
    count = reader.uvarint() - 1 if flexible else reader.int32()
    if count < 0:
        raise ValueError(f"ApiVersions v{version}: null api_keys array")
    if count > len(payload) // 6:
        raise ValueError(f"ApiVersions v{version}: api_keys count {count} exceeds the payload")
    api_keys = {}
    for _ in range(count):
        key, min_version, max_version = reader.int16(), reader.int16(), reader.int16()
        if flexible:
            reader.skip_tagged_fields()
        if key in api_keys:
            raise ValueError(f"ApiVersions v{version}: api_key {key} listed twice")
        api_keys[key] = (min_version, max_version)
    throttle_time_ms = reader.int32() if version >= 1 else None
    if flexible:
        reader.skip_tagged_fields()
    reader.expect_end(f"ApiVersions v{version} response")
    return ApiVersionsResponse(correlation_id, error_code, api_keys, throttle_time_ms)


def recv_exactly(sock, count):
    chunks = []
    while count:
        chunk = sock.recv(min(count, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_frame(sock, max_bytes=64 << 20):
    """One response payload (without its size prefix), honouring the socket's timeout."""
    (size,) = struct.unpack(">i", recv_exactly(sock, 4))
    if size < 4 or size > max_bytes:
        raise ValueError(f"implausible response size {size}")
    return recv_exactly(sock, size)


def api_versions(host, port, version=0, correlation_id=1, timeout_s=5.0):
    """Send one ApiVersions request on a new connection and return the decoded response."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(api_versions_request(version, correlation_id))
        return decode_api_versions_response(read_frame(sock), version)


def await_close_or_frame(sock, timeout_s):
    """Wait for the broker's reaction on a connection it should reject.

    Returns ("closed", data) when the broker closed (EOF or reset) within the timeout, with
    whatever it sent before; ("frame", payload) when a whole response frame arrived first;
    ("open", data) when neither happened in time: the broker kept the connection hanging.
    """
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        if len(data) >= 4:
            (size,) = struct.unpack(">i", data[:4])
            if 0 <= size <= len(data) - 4:
                return "frame", data[4:4 + size]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "open", data
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return "closed", data
        except socket.timeout:
            return "open", data
        if not chunk:
            return "closed", data
        data += chunk


def zigzag_varint(value):
    return uvarint((value << 1) ^ (value >> 63))


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def record_batch(values, base_timestamp_ms, corrupt_crc=False):
    """A Kafka v2 record batch (magic 2, no compression, no producer id) of null-key records.

    Layout: baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8, crc u32
    (CRC-32C of attributes..end), attributes i16, lastOffsetDelta i32, baseTimestamp i64,
    maxTimestamp i64, producerId i64, producerEpoch i16, baseSequence i32, records count i32,
    then records: length varint, attributes i8, timestampDelta varint, offsetDelta varint,
    key length varint (-1 = null), key, value length varint, value, header count varint.
    """
    records = b""
    for delta, value in enumerate(values):
        body = (b"\0" + zigzag_varint(delta) + zigzag_varint(delta) + zigzag_varint(-1)
                + zigzag_varint(len(value)) + value + zigzag_varint(0))
        records += zigzag_varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, base_timestamp_ms,
                            base_timestamp_ms + len(values) - 1, -1, -1, -1, len(values)) + records
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x5A5A5A5A
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def produce_request_v3(correlation_id, topic, partition, records, acks=-1, timeout_ms=10000):
    """Produce v3 (header v1): transactional_id, acks, timeout_ms, then one topic with one
    partition whose records are the given bytes."""
    body = (nullable_string(None) + struct.pack(">hi", acks, timeout_ms)
            + struct.pack(">i", 1) + nullable_string(topic)
            + struct.pack(">i", 1) + struct.pack(">ii", partition, len(records)) + records)
    return request_frame(PRODUCE, 3, correlation_id, body)


def decode_produce_response_v3(payload):
    """Returns (correlation_id, {(topic, partition): (error_code, base_offset)})."""
    reader = Reader(payload)
    correlation_id = reader.int32()
    results = {}
    for _ in range(reader.int32()):
        topic = reader.take(reader.int16()).decode()
        for _ in range(reader.int32()):
            partition, error_code = reader.int32(), reader.int16()
            base_offset = struct.unpack(">q", reader.take(8))[0]
            reader.take(8)  # log_append_time_ms
            results[(topic, partition)] = (error_code, base_offset)
    reader.int32()  # throttle_time_ms
    reader.expect_end("Produce v3 response")
    return correlation_id, results
