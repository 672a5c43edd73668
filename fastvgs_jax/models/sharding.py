"""Logical axis names → device-mesh axes: the one table that decides how the model is sharded.

Parameters and activations carry logical names (``embed``, ``mlp``, ``heads``, ...); a mesh has
physical axes ``data`` (batch), ``fsdp`` (parameters sharded, batch too) and ``model``
(tensor parallel). Changing the parallelism changes this table, never the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "model")

# (logical name, mesh axis or axes or None). First match wins; unmatched names replicate.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("length", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
    ("mel", None),
    ("codebook", None),
    ("groups", None),
    ("codevector", None),
    ("final", None),
    ("region", None),
    ("embed_out", None),
)


def make_mesh(shape: Sequence[int] | None = None, devices=None) -> Mesh:
    """A (data, fsdp, model) mesh; default puts every device on ``data``."""
    devices = list(devices if devices is not None else jax.devices())
    shape = tuple(shape) if shape is not None else (len(devices), 1, 1)
    if len(shape) != 3:
        raise ValueError(f"mesh shape {shape} must give sizes for {MESH_AXES}")
    needed = math.prod(shape)
    if needed != len(devices):
        raise ValueError(f"mesh shape {shape} needs {needed} devices; {len(devices)} available")
    return jax.make_mesh(
        shape,
        MESH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
        devices=devices,
    )


def logical_shardings(boxed_tree, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for a tree of logically-partitioned values (e.g. ``eval_shape(init)``).

    Leaves without logical names (e.g. BatchNorm statistics) are replicated.
    """
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Shard the leading (batch) axis over data × fsdp, replicate the rest."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))
