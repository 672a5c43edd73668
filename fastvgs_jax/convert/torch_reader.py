"""Read PyTorch checkpoints (``torch.save`` output) into numpy without torch or pickled code.

Foreign checkpoints (FaST-VGS+, fairseq wav2vec2) must be converted without torch at run time and
without ``torch.load``, which executes arbitrary pickled code. A restricted unpickler reads the zip
(torch >= 1.6) and legacy formats: tensors become contiguous numpy copies, a small whitelist of
reconstructors maps to local code, any other global becomes an inert :class:`Opaque` (fairseq's
``argparse.Namespace`` args, omegaconf ``cfg``) that :func:`opaque_to_plain` turns into dicts.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

try:
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes ships with jax
    _BF16 = np.dtype("V2")  # raw bits; widened to float32 when a tensor is built

__all__ = ["CheckpointReadError", "Opaque", "opaque_to_plain", "read_checkpoint"]

_MAGIC = 0x1950A86A20F9469CFC6C  # legacy format magic number
_TYPES = [  # (torch dtype name, storage type name without "Storage", numpy dtype)
    ("float32", "Float", "<f4"), ("float64", "Double", "<f8"), ("float16", "Half", "<f2"),
    ("bfloat16", "BFloat16", _BF16), ("int64", "Long", "<i8"), ("int32", "Int", "<i4"),
    ("int16", "Short", "<i2"), ("int8", "Char", "i1"), ("uint8", "Byte", "u1"),
    ("bool", "Bool", "?"), ("complex64", "ComplexFloat", "<c8"),
    ("complex128", "ComplexDouble", "<c16"), ("uint16", "UInt16", "<u2"),
    ("uint32", "UInt32", "<u4"), ("uint64", "UInt64", "<u8"), (None, "Untyped", "u1"),
]  # fmt: skip
_DTYPES: dict[str, np.dtype] = {storage: np.dtype(dt) for _, storage, dt in _TYPES}
_TORCH_DTYPES = {name: storage for name, storage, _ in _TYPES if name}


class CheckpointReadError(ValueError):
    """The file is missing, is not a torch checkpoint, or is corrupt/unsupported."""


class Opaque:
    """Inert stand-in for a non-whitelisted global; records what unpickling gave it."""

    module: str = ""
    name: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:  # REDUCE, NEWOBJ and NEWOBJ_EX
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.list_items, obj.dict_items = [], {}
        return obj

    def __setstate__(self, state: Any) -> None:  # BUILD
        self.state = state

    def append(self, item: Any) -> None:  # APPEND(S) of list subclasses
        self.list_items.append(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def __repr__(self) -> str:
        return f"Opaque({self.module}.{self.name})"


class _StorageType(str):
    """What find_class gives for ``torch.FloatStorage`` etc.: the bare type name."""


def _rebuild_tensor(
    storage: np.ndarray | None, offset: int, size: Any, stride: Any, *_: Any
) -> np.ndarray | None:
    if storage is None:  # first pass over a legacy file: storage bytes not read yet
        return None
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise ValueError(f"invalid tensor geometry size={size} stride={stride} offset={offset}")
    strides = tuple(s * storage.dtype.itemsize for s in stride)
    if 0 in size:
        arr = np.zeros(size, storage.dtype)
    elif offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= storage.size:
        raise ValueError(f"tensor size={size} stride={stride} exceeds its storage")
    else:
        arr = np.lib.stride_tricks.as_strided(storage[offset:], size, strides).copy()
    if arr.dtype == np.dtype("V2"):  # bfloat16 without ml_dtypes: bits << 16 is the float32
        arr = (arr.view("<u2").astype(np.uint32) << 16).view(np.float32)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _rebuild_tensor_v2(
    storage: np.ndarray | None, offset: int, size: Any, stride: Any, _grad: Any = False,
    _hooks: Any = None, metadata: Any = None,
) -> np.ndarray | None:  # fmt: skip
    arr = _rebuild_tensor(storage, offset, size, stride)
    if arr is not None and isinstance(metadata, dict):  # lazy conj/neg bits of torch views
        arr = -arr if metadata.get("neg") else arr
        arr = np.conj(arr) if metadata.get("conj") else arr
    return arr


def _rebuild_tensor_v3(
    storage: np.ndarray | None, offset: int, size: Any, stride: Any, _grad: Any, _hooks: Any,
    dtype: np.dtype, metadata: Any = None,
) -> np.ndarray | None:  # fmt: skip
    if not isinstance(dtype, np.dtype):
        raise ValueError(f"unknown tensor dtype {dtype!r}")
    if storage is not None:
        storage = storage.view(np.uint8)[: storage.nbytes // dtype.itemsize * dtype.itemsize]
        storage = storage.view(dtype)
    return _rebuild_tensor_v2(storage, offset, size, stride, _grad, _hooks, metadata)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise ValueError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _np_scalar(dtype: np.dtype, data: Any = None) -> Any:
    return data if dtype.hasobject else np.frombuffer(data, dtype)[0].copy()


def _np_array(_cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    return np.ndarray(shape, typecode)


def _reconstruct(cls: Any, base: Any, state: Any = None) -> Any:
    if isinstance(cls, type) and issubclass(cls, (Opaque, dict, list)):
        return cls()
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")


_SAFE: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    **{("torch._utils", f"_rebuild_parameter{s}"): lambda d, *_: d for s in ("", "_with_state")},
    ("torch._tensor", "_rebuild_from_type_v2"): lambda func, _type, args, _state: func(*args),
    ("torch", "Size"): tuple,
    ("torch", "device"): lambda *a: ":".join(str(x) for x in a),
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("builtins", f.__name__): f for f in (set, frozenset, complex, slice)},
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _reconstruct,
    ("copyreg", "__newobj__"): lambda cls, *args: _reconstruct(cls, object),
    ("numpy", "dtype"): lambda spec, *_: np.dtype(spec) if isinstance(spec, str) else None,
    ("numpy", "ndarray"): np.ndarray,  # BUILD then runs ndarray.__setstate__ (raw bytes/list)
    **{(f"numpy{m}.multiarray", "scalar"): _np_scalar for m in (".core", "._core")},
    **{(f"numpy{m}.multiarray", "_reconstruct"): _np_array for m in (".core", "._core")},
}


class _Unpickler(pickle.Unpickler):
    """Whitelisting unpickler; ``storage(key, dtype, numel)`` yields flat storages."""

    def __init__(self, file: IO[bytes], storage: Callable[[str, np.dtype, int], Any] | None):
        super().__init__(file)
        self._storage = storage
        self._opaque: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        if module in ("torch", "torch.cuda", "torch.storage") and name.endswith("Storage"):
            return _StorageType(name[: -len("Storage")])
        if module == "torch" and name in _TORCH_DTYPES:
            return _DTYPES[_TORCH_DTYPES[name]]
        if (module, name) not in self._opaque:
            attrs = {"module": module, "name": name}
            self._opaque[(module, name)] = type(str(name), (Opaque,), attrs)
        return self._opaque[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0] if isinstance(pid, tuple) and len(pid) in (5, 6) else None
        if kind not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if not isinstance(pid[1], _StorageType) or pid[1] not in _DTYPES:
            raise ValueError(f"unknown storage dtype {str(pid[1]) + 'Storage'!r}")
        dtype = _DTYPES[pid[1]]
        storage = self._storage(str(pid[2]), dtype, int(pid[4])) if self._storage else None
        if len(pid) == 6 and pid[5] is not None and storage is not None:  # legacy storage view
            _view_key, off, numel = pid[5]
            storage = storage[off : off + numel]
        return storage


def _read_zip(zf: zipfile.ZipFile) -> Any:
    pkl = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pkl:
        raise ValueError("zip archive has no data.pkl record")
    prefix = pkl[0][: -len("data.pkl")]
    big = f"{prefix}byteorder" in zf.namelist() and zf.read(f"{prefix}byteorder") == b"big"
    raw: dict[str, bytes] = {}

    def storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        if key not in raw:
            raw[key] = zf.read(f"{prefix}data/{key}")
        if len(raw[key]) < numel * dtype.itemsize:
            raise ValueError(f"storage {key!r} is truncated")
        return np.frombuffer(raw[key], dtype.newbyteorder(">") if big else dtype, numel)

    return _Unpickler(io.BytesIO(zf.read(pkl[0])), storage).load()


def _read_legacy(f: IO[bytes]) -> Any:
    magic, _protocol, _sys_info = (_Unpickler(f, None).load() for _ in range(3))
    if magic != _MAGIC:
        raise ValueError("not a torch checkpoint (bad magic number)")
    start, dtypes = f.tell(), {}
    # First pass over the main pickle only learns each storage's dtype (bytes come after it).
    _Unpickler(f, lambda key, dtype, _numel: dtypes.__setitem__(key, dtype)).load()
    storages: dict[str, np.ndarray] = {}
    for key in _Unpickler(f, None).load():
        count, dtype = int.from_bytes(f.read(8), "little"), dtypes[str(key)]
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"storage {key!r} is truncated")
        storages[str(key)] = np.frombuffer(data, dtype)
    f.seek(start)
    return _Unpickler(f, lambda key, dtype, numel: storages[key]).load()


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Load a ``torch.save`` file; tensors become numpy arrays, unknown globals :class:`Opaque`."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as zf:
                    return _read_zip(zf)
            f.seek(0)  # is_zipfile leaves the position at the end
            if head[257:262] == b"ustar":
                raise ValueError("the pre-1.0 tar checkpoint format is not supported")
            if not head.startswith(b"\x80"):
                raise ValueError("not a torch checkpoint (neither zip nor pickle)")
            return _read_legacy(f)
    except CheckpointReadError:
        raise
    except FileNotFoundError as e:
        raise CheckpointReadError(f"{os.fspath(path)}: checkpoint file not found") from e
    except Exception as e:  # any failure while parsing untrusted bytes
        msg = f"{os.fspath(path)}: cannot read torch checkpoint: {type(e).__name__}: {e}"
        raise CheckpointReadError(msg) from e


def opaque_to_plain(obj: Any, _memo: dict[int, Any] | None = None) -> Any:
    """Best-effort conversion of :class:`Opaque` placeholders (recursively) into plain data.

    Object state (``argparse.Namespace`` fields, ``__dict__``) becomes a dict; omegaconf
    ``DictConfig``/``ListConfig`` become dicts/lists of their node values; a stateless object
    built from one argument (e.g. an enum) becomes that argument, otherwise a list of its args.
    """
    memo = {} if _memo is None else _memo
    if isinstance(obj, dict):
        return type(obj)((k, opaque_to_plain(v, memo)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(opaque_to_plain(v, memo) for v in obj)
    if not isinstance(obj, Opaque):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        state = {**(state[0] if isinstance(state[0], dict) else {}), **state[1]}  # (dict, slots)
    if isinstance(state, dict) and "_content" in state:  # omegaconf container
        return opaque_to_plain(state["_content"], memo)
    if isinstance(state, dict) and "_val" in state:  # omegaconf value node
        return opaque_to_plain(state["_val"], memo)
    state = {} if state is None else state
    if isinstance(state, dict) and not state and not obj.dict_items:
        if obj.list_items:
            items = memo.setdefault(id(obj), [])
            items.extend(opaque_to_plain(v, memo) for v in obj.list_items)
            return items
        args = [opaque_to_plain(a, memo) for a in obj.args]
        return args[0] if len(args) == 1 else args
    out: dict[Any, Any] = memo.setdefault(id(obj), {})
    fields = {**obj.dict_items, **(state if isinstance(state, dict) else {"state": state})}
    out.update((k, opaque_to_plain(v, memo)) for k, v in fields.items())
    return out
