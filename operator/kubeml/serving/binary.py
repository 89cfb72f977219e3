"""Raw tensor bytes: the HTTP binary tensor data extension and gRPC's raw contents.

With the extension a request body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by the inputs' raw bytes, in input order, each input's share named by
``parameters.binary_data_size``; a response may carry outputs the same way. gRPC's
``raw_input_contents`` / ``raw_output_contents`` use the same element layout:
little-endian fixed-width numbers, one byte per BOOL, and BYTES as a 4-byte
little-endian length before each element.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import bad_request

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = np.dtype("<u4")


def decode(datatype: str, raw: bytes | memoryview, what: str) -> np.ndarray:
    """The flat array of one tensor's raw bytes."""
    if datatype == "BYTES":
        return _decode_bytes(raw, what)
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise bad_request(f"{what}: unknown datatype {datatype!r}")
    if len(raw) % dtype.itemsize:
        raise bad_request(
            f"{what}: {len(raw)} bytes of binary data is not a whole number of "
            f"{datatype} values ({dtype.itemsize} bytes each)"
        )
    if datatype == "BOOL":
        arr = np.frombuffer(raw, dtype=np.uint8)
        if arr.size and arr.max() > 1:
            raise bad_request(f"{what}: BOOL bytes must be 0 or 1")
        return arr.view(np.bool_)
    return np.frombuffer(raw, dtype=dtype)


def _decode_bytes(raw: bytes | memoryview, what: str) -> np.ndarray:
    view = memoryview(raw)
    out: list[str] = []
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < 4:
            raise bad_request(f"{what}: BYTES data ends inside an element's length")
        n = int(np.frombuffer(view[pos : pos + 4], dtype=_LENGTH)[0])
        pos += 4
        if n > end - pos:
            raise bad_request(f"{what}: a BYTES element of {n} bytes runs past the data")
        try:
            out.append(bytes(view[pos : pos + n]).decode("utf-8"))
        except UnicodeDecodeError as err:
            raise bad_request(f"{what}: a BYTES element is not UTF-8 text ({err.reason})") from err
        pos += n
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def encode(datatype: str, arr: np.ndarray) -> bytes:
    """Raw bytes of an output tensor in the protocol's layout."""
    if datatype == "BYTES":
        parts = []
        for v in arr.ravel().tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(len(b).to_bytes(4, "little"))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=DTYPES[datatype]).tobytes()


def split_request(body: bytes, header_length: int) -> tuple[bytes, memoryview]:
    """(JSON header, the binary part) of an extension request body."""
    if not 0 < header_length <= len(body):
        raise bad_request(
            f"Inference-Header-Content-Length {header_length} does not fit a body of "
            f"{len(body)} bytes"
        )
    return body[:header_length], memoryview(body)[header_length:]


def attach_inputs(doc: dict[str, Any], tail: memoryview) -> None:
    """Give each input with ``parameters.binary_data_size`` its slice of ``tail`` as
    ``data`` (decoded); every byte of ``tail`` must belong to some input."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        return  # the decoder names the problem
    pos = 0
    for t in inputs:
        if not isinstance(t, dict):
            continue
        params = t.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name = t.get("name")
        what = f"input {name!r}"
        if type(size) is not int or size < 0:
            raise bad_request(f"{what}: parameters.binary_data_size must be a non-negative integer")
        if "data" in t:
            raise bad_request(f"{what}: has both data and parameters.binary_data_size")
        if pos + size > len(tail):
            raise bad_request(
                f"{what}: binary_data_size {size} runs past the {len(tail)} bytes of binary data"
            )
        datatype = t.get("datatype")
        if not isinstance(datatype, str):
            raise bad_request(f"{what}: datatype must be a string such as FP64")
        t["data"] = decode(datatype, tail[pos : pos + size], what)
        pos += size
    if pos != len(tail):
        raise bad_request(
            f"the body holds {len(tail) - pos} bytes of binary data that no input claims "
            "(parameters.binary_data_size)"
        )
