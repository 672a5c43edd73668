"""torch_reader: real ``torch.save`` files (zip and legacy) read without torch or pickled code."""

from __future__ import annotations

import argparse
import ast
import collections
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastvgs_jax.convert import torch_reader
from fastvgs_jax.convert.torch_reader import CheckpointReadError, Opaque, read_checkpoint

FORMATS = pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])


def _save(torch, obj, path: Path, zip_format: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def _as_np(t) -> np.ndarray:
    t = t.detach()
    return t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()


def _with_attr(t):
    t.note = "kept by torch, dropped by the reader"
    return t


def _torch_fixture(torch):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    shared = torch.arange(10, dtype=torch.int64)
    sd = collections.OrderedDict(
        w32=torch.randn(3, 4, generator=g),
        w16=torch.randn(5, generator=g).half(),
        bf16=torch.randn(2, 3, generator=g).bfloat16(),
        idx=torch.tensor([1, -2, 3_000_000_000]),
        u16=torch.tensor([1, 65535], dtype=torch.uint16),  # pickled via _rebuild_tensor_v3
        mask=torch.tensor([True, False, True]),
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 3),
        param=torch.nn.Parameter(torch.ones(2, 2)),
    )
    return {
        "model": sd,
        "view": base.t()[1:7:2, ::3],  # non-contiguous, offset into its storage
        "shared_a": shared[2:5],
        "shared_b": shared.view(2, 5),
        "meta": {"step": 7, "names": ["a", "b"], "nested": [{"x": (1, "two")}, None, 1.5]},
        "flag": True,
        "conj": torch.tensor([1 + 2j, 3 - 1j]).conj(),  # conj bit, storage not conjugated
        "neg": torch.tensor([1 + 2j]).conj().imag,  # neg bit
        "attr": _with_attr(torch.ones(2)),  # Python state -> torch._tensor._rebuild_from_type_v2
    }


@FORMATS
def test_round_trip_matches_torch(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    obj = _torch_fixture(torch)
    got = read_checkpoint(_save(torch, obj, tmp_path / "ckpt.pt", zip_format))

    assert isinstance(got["model"], collections.OrderedDict)
    assert list(got["model"]) == list(obj["model"])
    for name, t in obj["model"].items():
        arr = got["model"][name]
        assert isinstance(arr, np.ndarray) and arr.shape == tuple(t.shape), name
        np.testing.assert_array_equal(np.asarray(arr, dtype=_as_np(t).dtype), _as_np(t))
    assert got["model"]["w32"].dtype == np.float32
    assert got["model"]["w16"].dtype == np.float16
    assert got["model"]["bf16"].dtype.name == "bfloat16"
    assert got["model"]["idx"].dtype == np.int64 and got["model"]["mask"].dtype == np.bool_
    assert got["model"]["u16"].dtype == np.uint16
    for key in ("view", "shared_a", "shared_b", "conj", "neg", "attr"):
        assert got[key].flags.c_contiguous
        np.testing.assert_array_equal(got[key], obj[key].resolve_conj().resolve_neg().numpy())
    assert got["meta"] == obj["meta"] and got["flag"] is True


def test_bfloat16_without_ml_dtypes_widens_to_float32(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    t = torch.randn(4, 3).bfloat16()
    path = _save(torch, {"t": t}, tmp_path / "bf16.pt", True)
    monkeypatch.setitem(torch_reader._DTYPES, "BFloat16", np.dtype("V2"))
    got = read_checkpoint(path)["t"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, t.float().numpy())


@FORMATS
def test_fairseq_style_args_become_placeholder(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    args = argparse.Namespace(conv_feature_layers="[(512,10,5)]", encoder_layers=12)
    obj = {"model": {"w": torch.ones(2)}, "args": args, "best": np.float64(0.25)}
    got = read_checkpoint(_save(torch, obj, tmp_path / "fairseq.pt", zip_format))
    np.testing.assert_array_equal(got["model"]["w"], np.ones(2, np.float32))
    assert isinstance(got["args"], Opaque)
    assert (got["args"].module, got["args"].name) == ("argparse", "Namespace")
    assert torch_reader.opaque_to_plain(got["args"]) == vars(args)
    assert got["best"] == 0.25


def _fake_omegaconf(monkeypatch) -> types.ModuleType:
    """Classes shaped like omegaconf's (state: ``_content`` / ``_val`` / ``_parent`` back-links)."""
    mod = types.ModuleType("omegaconf")

    class Node:
        def __init__(self, val, parent=None):
            self._val, self._parent, self._metadata = val, parent, {"ref_type": "Any"}

    class DictConfig:
        def __init__(self, content, parent=None):
            self._parent = parent
            self._content = {k: _wrap(v, self) for k, v in content.items()}

    class ListConfig:
        def __init__(self, content, parent=None):
            self._parent = parent
            self._content = [_wrap(v, self) for v in content]

    def _wrap(v, parent):
        if isinstance(v, dict):
            return DictConfig(v, parent)
        return ListConfig(v, parent) if isinstance(v, list) else Node(v, parent)

    for cls in (Node, DictConfig, ListConfig):
        cls.__module__, cls.__qualname__ = "omegaconf", cls.__name__
        setattr(mod, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "omegaconf", mod)
    return mod


CFG = {"model": {"conv_feature_layers": "[(512,10,5)]", "encoder_layers": 12, "drop": [0.1]}}


def test_omegaconf_shaped_cfg_to_plain(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    cfg = _fake_omegaconf(monkeypatch).DictConfig(CFG)
    got = read_checkpoint(_save(torch, {"cfg": cfg}, tmp_path / "cfg.pt", True))
    monkeypatch.delitem(sys.modules, "omegaconf")
    assert torch_reader.opaque_to_plain(got["cfg"]) == CFG


def test_real_omegaconf_cfg_to_plain(tmp_path):
    torch = pytest.importorskip("torch")
    omegaconf = pytest.importorskip("omegaconf", reason="omegaconf is not installed")
    cfg = omegaconf.OmegaConf.create(CFG)
    got = read_checkpoint(_save(torch, {"cfg": cfg}, tmp_path / "cfg.pt", True))
    plain = torch_reader.opaque_to_plain(got["cfg"])
    assert plain["model"]["conv_feature_layers"] == "[(512,10,5)]"
    assert plain["model"]["encoder_layers"] == 12


class _Evil:
    def __init__(self, target: Path):
        self.cmd = f"touch {target}"

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


def _zip_with_pickle(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize("protocol", [0, 2])
def test_malicious_global_is_not_executed(tmp_path, protocol):
    target = tmp_path / "pwned"
    payload = pickle.dumps({"x": _Evil(target)}, protocol=protocol)
    assert b"system" in payload
    got = read_checkpoint(_zip_with_pickle(tmp_path / "evil.pt", payload))
    assert not target.exists()
    assert isinstance(got["x"], Opaque) and got["x"].name == "system"
    assert got["x"].args == (f"touch {target}",)


def test_malicious_legacy_file_is_not_executed(tmp_path):
    target = tmp_path / "pwned"
    buf = io.BytesIO()
    for part in (torch_reader._MAGIC, 1001, {}, [_Evil(target)], []):
        pickle.dump(part, buf, protocol=2)
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    got = read_checkpoint(tmp_path / "evil.pt")
    assert not target.exists() and isinstance(got[0], Opaque)


def test_eval_global_is_inert(tmp_path):
    target = tmp_path / "pwned"
    code = f"open({str(target)!r}, 'w')"
    payload = b"cbuiltins\neval\n(V" + code.encode() + b"\ntR."
    got = read_checkpoint(_zip_with_pickle(tmp_path / "evil.pt", payload))
    assert not target.exists() and isinstance(got, Opaque)


@FORMATS
def test_truncated_file_names_the_file(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    path = _save(torch, {"w": torch.randn(64, 64)}, tmp_path / "trunc.pt", zip_format)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointReadError, match="trunc.pt"):
        read_checkpoint(path)


def test_random_bytes_and_missing_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointReadError, match="junk.pt"):
        read_checkpoint(junk)
    with pytest.raises(CheckpointReadError, match="missing.pt"):
        read_checkpoint(tmp_path / "missing.pt")


def test_unknown_storage_dtype(tmp_path):
    payload = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
        b"ctorch\nQInt8Storage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85"
        b"K\x01\x85\x89NtR."
    )
    path = _zip_with_pickle(tmp_path / "q.pt", payload)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/data/0", b"\x00")
    with pytest.raises(CheckpointReadError, match="unknown storage dtype 'QInt8Storage'"):
        read_checkpoint(path)


def test_module_does_not_import_torch_or_unpickle_directly():
    tree = ast.parse(Path(torch_reader.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.split(".")[0] == "torch" for m in imported)
    source = Path(torch_reader.__file__).read_text()
    assert "pickle.load(" not in source and "pickle.loads(" not in source
