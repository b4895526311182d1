"""Open Inference Protocol V2 (REST): tensors in and out, JSON or the binary tensor
data extension (the framing NVIDIA's tritonclient sends by default).

One description of a model's tensors (:func:`tensors`) gives both the model
metadata document and the datatypes of every response, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelport.metadata import ModelCard
from service.transport import BINARY_HEADER, InputError, parse_json, show
from service.validation import Batch, Schema, batch_from_columns, check_batch_size, check_values

# OIP datatype -> NumPy dtype (little-endian, as the binary extension specifies).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
NUMERIC = frozenset(DTYPES) - {"BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def doc(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


_TENSORS: dict[tuple[int, bool], tuple[ModelCard, tuple[list[TensorSpec], list[TensorSpec]]]] = {}


def tensors(card: ModelCard, explain: bool = False) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of a model: one input per feature; ``predict`` (and, for
    classifiers, ``probabilities``) out; with ``explain``, ``attributions`` (one per
    input feature, in input order) and ``base_values`` (parameters ``explain: true``).

    Kept per card (read-only for callers): every infer request asks, and building a
    spec per feature cost ~8 µs of a single-row request."""
    hit = _TENSORS.get((id(card), explain))
    if hit is not None and hit[0] is card:
        return hit[1]
    if len(_TENSORS) > 256:  # cards come and go only in tests
        _TENSORS.clear()
    found = _tensors(card, explain)
    _TENSORS[(id(card), explain)] = (card, found)
    return found


def _tensors(card: ModelCard, explain: bool) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [
        TensorSpec(f.name, "FP64" if f.kind == "numeric" else "BYTES", [-1, 1])
        for f in card.features
    ]
    if card.task == "regression":
        outputs = [TensorSpec("predict", "FP64", [-1])]
    else:
        classes = card.classes or []
        ints = bool(classes) and all(
            isinstance(c, int) and not isinstance(c, bool) for c in classes
        )
        outputs = [
            TensorSpec("predict", "INT64" if ints else "BYTES", [-1]),
            TensorSpec("probabilities", "FP64", [-1, len(classes)]),
        ]
    if explain:
        outputs += [
            TensorSpec("attributions", "FP64", [-1, len(card.features)]),
            TensorSpec("base_values", "FP64", [-1]),
        ]
    return inputs, outputs


def metadata(name: str, version: str, card: ModelCard) -> dict[str, Any]:
    inputs, outputs = tensors(card)
    return {
        "name": name,
        "versions": [version],
        "platform": "sklearn" if card.framework == "sklearn" else "tensorflow",
        "inputs": [t.doc() for t in inputs],
        "outputs": [t.doc() for t in outputs],
    }


@dataclass
class InferRequest:
    """A decoded inference request: the JSON document, and for binary inputs the
    bytes of each input (by index)."""

    body: dict[str, Any]
    inputs: list[dict[str, Any]]
    binary: dict[int, bytes] = field(default_factory=dict)

    @property
    def id(self) -> str | None:
        value = self.body.get("id")
        return value if isinstance(value, str) else None

    @property
    def parameters(self) -> dict[str, Any]:
        value = self.body.get("parameters")
        return value if isinstance(value, dict) else {}


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    value = obj.get("parameters", {})
    if not isinstance(value, dict):
        raise InputError(f"{where}.parameters: expected an object, got {show(value)}")
    return value


def decode(raw: bytes, headers: Any) -> InferRequest:
    """The body -> :class:`InferRequest`, checking the structure (not the model's
    schema): every field that later code uses has the right JSON type."""
    binary_length = headers.get(BINARY_HEADER)
    if binary_length is not None:
        if not binary_length.isdigit() or int(binary_length) > len(raw):
            raise InputError(
                f"Inference-Header-Content-Length: {show(binary_length)} is not a length "
                f"within the {len(raw)}-byte body"
            )
        split = int(binary_length)
        body, tail = parse_json(raw[:split], "body (JSON header)"), raw[split:]
    else:
        body, tail = parse_json(raw), b""
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object with 'inputs'")
    _params(body, "body")
    try:  # parameters are echoed in the response: they must encode again
        orjson.dumps(body.get("parameters"))
    except TypeError:
        raise InputError("parameters: values must be JSON numbers within 64 bits") from None
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("inputs: expected a non-empty list of tensors")
    binary: dict[int, bytes] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise InputError(f"{where}: expected an object with name, shape, datatype, data")
        for key, kind in (("name", str), ("datatype", str), ("shape", list)):
            if not isinstance(tensor.get(key), kind):
                raise InputError(
                    f"{where}.{key}: expected a {'string' if kind is str else 'list'}, "
                    f"got {show(tensor.get(key))}"
                )
        _shape(tensor["shape"], where)
        size = _params(tensor, where).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InputError(f"{where}.parameters.binary_data_size: expected a byte count")
            if offset + size > len(tail):
                raise InputError(
                    f"{where}.parameters.binary_data_size: {size} bytes, but only "
                    f"{len(tail) - offset} binary bytes remain in the body"
                )
            binary[i] = tail[offset : offset + size]
            offset += size
        elif "data" not in tensor:
            raise InputError(f"{where}: expected 'data' (or binary data with binary_data_size)")
    if offset != len(tail):
        raise InputError(
            f"body: {len(tail) - offset} binary bytes after the JSON header are not claimed "
            "by any input's binary_data_size"
        )
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise InputError(f"outputs: expected a list of {{'name': ...}}, got {show(outputs)}")
        for j, out in enumerate(outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InputError(f"outputs[{j}]: expected an object with a string 'name'")
            _params(out, f"outputs[{j}]")
    return InferRequest(body, inputs, binary)


def _shape(shape: list[Any], where: str) -> list[int]:
    if not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(
            f"{where}.shape: expected a list of non-negative integers, got {show(shape)}"
        )
    return shape


def _numbers(req: InferRequest, i: int, count: int, where: str) -> np.ndarray:
    tensor = req.inputs[i]
    datatype = tensor["datatype"]
    if datatype not in DTYPES:
        raise InputError(
            f"{where}.datatype: {show(datatype)} is not a numeric type (FP32, FP64, INT64, ...)"
        )
    if i in req.binary:
        raw = req.binary[i]
        dtype = DTYPES[datatype]
        if len(raw) != count * dtype.itemsize:
            raise InputError(
                f"{where}: {len(raw)} binary bytes, the shape needs {count} x "
                f"{dtype.itemsize} ({datatype})"
            )
        arr = np.frombuffer(raw, dtype=dtype).astype(float)
    else:
        try:
            arr = np.asarray(tensor["data"], dtype=float).reshape(-1)
        except (TypeError, ValueError, OverflowError, RecursionError):
            raise InputError(f"{where}.data: expected a (nested) list of numbers") from None
        if arr.size != count:
            raise InputError(f"{where}.data: has {arr.size} elements, the shape needs {count}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputError(f"{where}.data[{bad}]: must be a finite number, got {arr[bad]}")
    return arr


def _strings(req: InferRequest, i: int, count: int, where: str) -> list[str]:
    tensor = req.inputs[i]
    if i in req.binary:
        values = _unpack_bytes(req.binary[i], where)
    else:
        data = tensor["data"]
        values = data if isinstance(data, list) else [data]
        if values and isinstance(values[0], list):  # [[a], [b]] for shape [n, 1]
            values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
        for j, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise InputError(f"{where}.data[{j}]: expected a string, got {show(v)}")
        values = [str(v) for v in values]
    if len(values) != count:
        raise InputError(f"{where}.data: has {len(values)} elements, the shape needs {count}")
    return values


def _unpack_bytes(raw: bytes, where: str) -> list[str]:
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InputError(f"{where}: truncated BYTES element length at byte {pos}")
        n = int.from_bytes(raw[pos : pos + 4], "little")
        pos += 4
        if pos + n > len(raw):
            raise InputError(f"{where}: BYTES element of {n} bytes overruns the data")
        try:
            out.append(raw[pos : pos + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{where}: BYTES element is not UTF-8 text") from None
        pos += n
    return out


def validate(req: InferRequest, schema: Schema, max_rows: int) -> Batch:
    """Inputs -> validated batch: one [n, features] tensor (all-numeric models), or
    one named input per feature, each of shape [n] or [n, 1]."""
    card = schema.card
    names = card.feature_names
    inputs = req.inputs
    if len(inputs) == 1 and inputs[0]["name"] not in schema.expected:
        where = "inputs[0]"
        if not schema.all_numeric:
            raise InputError(
                f"{where}: this model has categorical features; send one named input per feature"
            )
        shape = inputs[0]["shape"]
        if len(shape) != 2 or shape[1] != len(names):
            raise InputError(
                f"{where}.shape: expected [n, {len(names)}] "
                f"(n rows of {len(names)} features), got {show(shape)}"
            )
        check_batch_size(shape[0], max_rows, f"{where}.shape[0]")
        return Batch(_numbers(req, 0, shape[0] * shape[1], where).reshape(shape))

    given: dict[str, int] = {}
    for i, t in enumerate(inputs):
        if t["name"] in given:
            raise InputError(f"inputs[{i}].name: {show(t['name'])} is given twice")
        given[t["name"]] = i
    unknown = [n for n in given if n not in schema.expected]
    if unknown:
        raise InputError(
            f"inputs: unknown input(s) {show(unknown[:5])}; expected one per feature: "
            f"{names[:5]}{' ...' if len(names) > 5 else ''}"
        )
    absent = [n for n in names if n not in given]
    if absent:
        raise InputError(f"inputs: missing input(s) for feature(s) {absent[:5]}", missing=absent)
    columns: dict[str, Any] = {}
    rows: int | None = None
    for spec in card.features:
        i = given[spec.name]
        where = f"inputs[{i}] ({spec.name})"
        shape = inputs[i]["shape"]
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"{where}.shape: expected [n] or [n, 1], got {show(shape)}")
        if rows is None:
            rows = shape[0]
            check_batch_size(rows, max_rows, f"{where}.shape[0]")
        elif shape[0] != rows:
            raise InputError(f"{where}.shape: {shape[0]} rows, other inputs have {rows}")
        if spec.kind == "numeric":
            columns[spec.name] = _numbers(req, i, shape[0], where)
        else:
            columns[spec.name] = _strings(req, i, shape[0], where)
    check_values(columns, schema, lambda row, f: f"inputs[{given[f]}] ({f}).data[{row}]")
    return batch_from_columns(columns, schema)


@dataclass
class Outputs:
    """Output tensors ready to encode: name -> (spec, values as a NumPy array)."""

    specs: list[TensorSpec]
    values: dict[str, np.ndarray]


def select(req: InferRequest, available: list[TensorSpec]) -> list[TensorSpec]:
    """The outputs asked for (all when none are named); unknown names are a 400."""
    wanted = req.body.get("outputs")
    if not wanted:
        return available
    names = [w["name"] for w in wanted]
    known = {t.name: t for t in available}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"outputs: unknown output(s) {show(sorted(unknown))}; available: {sorted(known)}"
        )
    return [known[n] for n in dict.fromkeys(names)]


def _binary_wanted(req: InferRequest, name: str) -> bool:
    for w in req.body.get("outputs") or []:
        if w["name"] == name and "binary_data" in w.get("parameters", {}):
            return bool(w["parameters"]["binary_data"])
    return bool(req.parameters.get("binary_data_output", False))


def encode(
    req: InferRequest,
    name: str,
    version: str,
    specs: list[TensorSpec],
    values: dict[str, np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers: JSON, or JSON then binary tensors for the
    outputs asked for with ``binary_data`` (header ``Inference-Header-Content-Length``)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for spec in specs:
        arr = values[spec.name]
        doc: dict[str, Any] = {
            "name": spec.name,
            "shape": list(arr.shape),
            "datatype": spec.datatype,
        }
        if _binary_wanted(req, spec.name):
            blob = _pack(arr, spec.datatype)
            doc["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif spec.datatype == "BYTES":
            doc["data"] = [str(v) for v in arr.reshape(-1).tolist()]
        else:
            doc["data"] = arr.reshape(-1)
        outputs.append(doc)
    payload: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": outputs}
    if req.id is not None:
        payload["id"] = req.id
    params = {**req.parameters, **(parameters or {})}
    params.pop("binary_data_output", None)
    if params:
        payload["parameters"] = params
    head = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, {}
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def _pack(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in arr.reshape(-1).tolist():
            b = str(v).encode("utf-8")
            parts.append(len(b).to_bytes(4, "little") + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=DTYPES[datatype]).tobytes()
