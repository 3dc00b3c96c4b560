"""TFRecord files of ``tf.train.Example`` records, without TensorFlow.

Framing (what tf.data's TFRecordDataset reads): for each record
``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``, little-endian.
The Example protobuf classes are built at import from a descriptor equal to TensorFlow's
``example.proto``/``feature.proto`` (same package and field numbers), so the bytes are interchangeable.
Readers here take a byte offset, so a dataset can be read by index (what Grain's random access needs), or
parse a record already fetched as a byte range (``parse_record``: a batch of them from a bucket at once).
Files are local paths or ``gs://`` URIs (``gw_jax.storage``).
"""

from __future__ import annotations

import hashlib
import struct
from typing import BinaryIO, Iterator

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from gw_jax.errors import UserInputError
from gw_jax.storage import as_path


class CorruptRecordError(UserInputError):
    """A record whose framing or checksum is wrong; the message names the file and the record."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record in TFRecord framing."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def _check_header(header: bytes, offset: int, where: str) -> int:
    """The data length from a record's 12-byte header, its checksum verified."""
    if len(header) < 12:
        raise CorruptRecordError(f"{where}: truncated record header at byte {offset}")
    length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
    if _masked_crc(length_bytes) != length_crc:
        raise CorruptRecordError(f"{where}: bad length checksum at byte {offset}")
    return struct.unpack("<Q", length_bytes)[0]


def _check_body(body: bytes, length: int, offset: int, where: str) -> bytes:
    """The data from a record's body (data + its checksum), verified."""
    if len(body) < length + 4:
        raise CorruptRecordError(f"{where}: truncated record at byte {offset}")
    data, (data_crc,) = body[:length], struct.unpack("<I", body[length:length + 4])
    if _masked_crc(data) != data_crc:
        raise CorruptRecordError(f"{where}: bad data checksum at byte {offset}")
    return data


def read_record_at(f: BinaryIO, offset: int, *, where: str = "") -> bytes:
    """The record starting at byte ``offset`` of an open file, checksums verified."""
    f.seek(offset)
    length = _check_header(f.read(12), offset, where)
    return _check_body(f.read(length + 4), length, offset, where)


def parse_record(framed: bytes, offset: int = 0, *, where: str = "") -> bytes:
    """The data of one framed record (the bytes from its offset to the next record's), checksums verified;
    ``offset`` only names the place in errors."""
    length = _check_header(framed[:12], offset, where)
    if len(framed) != 16 + length:
        raise CorruptRecordError(f"{where}: record at byte {offset} is {len(framed)} bytes, its header says "
                                 f"{16 + length}")
    return _check_body(framed[12:], length, offset, where)


class _HashingReader:
    """Reads a file front to back, feeding every byte read to ``digest`` (one pass: records and checksum)."""

    def __init__(self, f: BinaryIO, digest):
        self.f, self.digest = f, digest

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.digest.update(data)
        return data


def iter_records(path, *, digest=None) -> Iterator[tuple[int, bytes]]:
    """(offset, data) for every record of a file, in order; raises on the first corrupt one. ``digest`` (a
    hashlib object) is fed the file's bytes as they are read."""
    path = as_path(path)
    size = path.stat().length
    with path.open("rb") as f:
        reader = _HashingReader(f, digest if digest is not None else hashlib.sha256())
        offset, index = 0, 0
        while offset < size:
            where = f"{path} record {index}"
            length = _check_header(reader.read(12), offset, where)
            data = _check_body(reader.read(length + 4), length, offset, where)
            yield offset, data
            offset += 16 + length
            index += 1


class RecordWriter:
    """Writes framed records to ``path`` (local or ``gs://``) and remembers each one's offset, the file's size
    and its SHA-256."""

    def __init__(self, path):
        self.path = as_path(path)
        self._file = self.path.open("wb")
        self.offsets: list[int] = []
        self.size = 0
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        framed = frame(data)
        self.offsets.append(self.size)
        self._file.write(framed)
        self._digest.update(framed)
        self.size += len(framed)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        self._file.flush()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None and hasattr(self._file, "discard"):  # an upload cut short (local: a temp name)
            self._file.discard()  # cancels a multi-part upload...
            self._file.closed = True  # ...and a small one is never sent: no half object under the name
            return
        self.close()


# ------------------------------------------------------------------ tf.train.Example


def _example_classes():
    """Example / Features / Feature message classes from TensorFlow's proto definitions."""
    proto = descriptor_pb2.FileDescriptorProto(name="gw_jax/tensorflow_example.proto", package="tensorflow",
                                               syntax="proto3")
    rep, opt = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED, descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    t = descriptor_pb2.FieldDescriptorProto

    for name, type_ in (("BytesList", t.TYPE_BYTES), ("FloatList", t.TYPE_FLOAT), ("Int64List", t.TYPE_INT64)):
        m = proto.message_type.add(name=name)
        field = m.field.add(name="value", number=1, label=rep, type=type_)
        if type_ != t.TYPE_BYTES:
            field.options.packed = True
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                                 ("int64_list", "Int64List")), start=1):
        feature.field.add(name=name, number=number, label=opt, type=t.TYPE_MESSAGE,
                          type_name=f".tensorflow.{type_name}", oneof_index=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=opt, type=t.TYPE_STRING)
    entry.field.add(name="value", number=2, label=opt, type=t.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=rep, type=t.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    example.field.add(name="features", number=1, label=opt, type=t.TYPE_MESSAGE, type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _example_classes()


def encode_example(features: dict) -> bytes:
    """dict of bytes / str / int / float / lists of them / numpy arrays (stored as raw bytes) -> Example."""
    example = Example()
    for key, value in features.items():
        feature = example.features.feature[key]
        if isinstance(value, np.ndarray):
            feature.bytes_list.value.append(np.ascontiguousarray(value).tobytes())
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if all(isinstance(v, (bytes, str)) for v in values):
            feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in values)
        elif all(isinstance(v, (int, np.integer)) for v in values):
            feature.int64_list.value.extend(int(v) for v in values)
        else:
            feature.float_list.value.extend(float(v) for v in values)
    return example.SerializeToString(deterministic=True)  # map keys sorted: the same episode, the same bytes


def decode_example(data: bytes) -> dict[str, list]:
    """Example bytes -> {key: list of values} (bytes, ints or floats)."""
    example = Example()
    example.ParseFromString(data)
    out = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = list(getattr(feature, kind).value) if kind else []
    return out
