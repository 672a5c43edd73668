"""Table-driven weight conversion: one ``Rule`` per tensor, applied in either direction.

A rule pairs a path in our variables with a key in a foreign (PyTorch-layout) state dict
and names the layout change between them. Import and export read the same table, so the
two directions cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import numpy as np


class ConversionError(ValueError):
    """A checkpoint that does not fit the model: missing key, shape, or architecture."""


@dataclasses.dataclass(frozen=True)
class Rule:
    ours: tuple[str, ...]  # path in our variables, e.g. ("params", "speech_encoder", "cls")
    theirs: str  # key in the foreign state dict
    layout: str = "copy"  # see LAYOUTS
    aliases: tuple[str, ...] = ()  # other names the same tensor goes by (older exports)
    optional: bool = False  # absent in some checkpoints (e.g. no quantizer in a bare encoder)


def _linear(x, shape):  # torch [out, in] ↔ ours [in, out]
    return x.T


def _conv(x, shape):  # torch [out, in, k] ↔ ours [k, in, out]
    return x.transpose(2, 1, 0)


# name → (to_ours(theirs, our_shape), to_theirs(ours, our_shape))
LAYOUTS = {
    "copy": (lambda x, s: x, lambda x, s: x),
    # torch Conv2d [out, in, kh, kw] ↔ Flax nn.Conv [kh, kw, in, out] (image towers' patches)
    "conv2d": (lambda x, s: x.transpose(2, 3, 1, 0), lambda x, s: x.transpose(3, 2, 0, 1)),
    # torch [1, tokens, D] (ViT keeps a batch axis on its position table) ↔ ours [tokens, D]
    "drop_leading_1": (lambda x, s: x.reshape(s), lambda x, s: x[None]),
    "linear": (_linear, _linear),
    "conv": (_conv, _conv),
    # torch Conv2d over [B, C, 1, T] with kernel (1, k) ↔ our 1-D conv [k, in, out].
    "conv_1xk": (
        lambda x, s: x[:, :, 0, :].transpose(2, 1, 0),
        lambda x, s: x.transpose(2, 1, 0)[:, :, None, :],
    ),
    # q/k/v: torch [heads·head_dim, in] ↔ ours [in, heads, head_dim]
    "heads_in": (lambda x, s: x.T.reshape(s), lambda x, s: x.reshape(s[0], -1).T),
    # attention output: torch [out, heads·head_dim] ↔ ours [heads, head_dim, out]
    "heads_out": (lambda x, s: x.T.reshape(s), lambda x, s: x.reshape(-1, s[-1]).T),
    # flat vectors stored with leading singleton dims ([1, 1, D]) or split heads ([H, Dh])
    "reshape_flat": (lambda x, s: x.reshape(s), lambda x, s: x.reshape(-1)),
    "reshape_111": (lambda x, s: x.reshape(s), lambda x, s: x.reshape(1, 1, -1)),
    # codebook: torch [1, groups·entries, dim/groups] ↔ ours [groups, entries, dim/groups]
    "codebook": (lambda x, s: x.reshape(s), lambda x, s: x.reshape(1, -1, s[-1])),
}


def _their_shape(rule: Rule, our_shape: tuple[int, ...]) -> tuple[int, ...]:
    probe = np.zeros(our_shape, np.float32)
    return LAYOUTS[rule.layout][1](probe, our_shape).shape


def flat_variables(variables: Mapping) -> dict[tuple[str, ...], Any]:
    return flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))


@dataclasses.dataclass
class ImportReport:
    """What an import filled in, what it left at initialisation, and what it ignored."""

    restored: list[str]
    kept_initial: list[str]
    unused_keys: list[str]

    def summary(self) -> str:
        lines = [f"restored {len(self.restored)} tensors"]
        if self.kept_initial:
            lines.append(f"kept at initialisation ({len(self.kept_initial)}):")
            lines += [f"  {p}" for p in self.kept_initial]
        if self.unused_keys:
            lines.append(f"checkpoint keys not used ({len(self.unused_keys)}):")
            lines += [f"  {k}" for k in self.unused_keys]
        return "\n".join(lines)


def import_weights(
    state: Mapping[str, np.ndarray],
    rules: Sequence[Rule],
    variables: Mapping,
    source: str = "checkpoint",
) -> tuple[dict, ImportReport]:
    """Fill ``variables`` (our tree, e.g. freshly initialised) from a foreign ``state`` dict.

    Raises:
      ConversionError: a required key is missing, or a tensor's shape differs from what the
        model config implies (naming the key and both shapes).
    """
    flat = flat_variables(variables)
    used: set[str] = set()
    restored: list[tuple[str, ...]] = []
    for rule in rules:
        if rule.ours not in flat:
            raise ConversionError(f"internal: no model variable {'/'.join(rule.ours)}")
        key = next((k for k in (rule.theirs, *rule.aliases) if k in state), None)
        if key is None:
            if rule.optional:
                continue
            raise ConversionError(
                f"{source}: missing key {rule.theirs!r} (for {'/'.join(rule.ours)}); is it a "
                "checkpoint of this architecture and size?"
            )
        our_shape = tuple(flat[rule.ours].shape)
        expected = _their_shape(rule, our_shape)
        value = np.asarray(state[key])
        if tuple(value.shape) != expected:
            raise ConversionError(
                f"{source}: {key!r} has shape {tuple(value.shape)} but the model config "
                f"expects {expected} (for {'/'.join(rule.ours)})"
            )
        converted = LAYOUTS[rule.layout][0](value.astype(np.float32), our_shape)
        flat[rule.ours] = np.ascontiguousarray(converted, dtype=np.asarray(flat[rule.ours]).dtype)
        used.add(key)
        restored.append(rule.ours)
    done = set(restored)
    kept = ["/".join(p) for p in flat if p not in done]
    unused = sorted(k for k in state if k not in used)
    report = ImportReport(["/".join(p) for p in restored], kept, unused)
    return flax.traverse_util.unflatten_dict(flat), report


def export_weights(variables: Mapping, rules: Sequence[Rule]) -> dict[str, np.ndarray]:
    """Our variables → a foreign state dict (numpy, float32), by the same rules."""
    flat = flat_variables(variables)
    out = {}
    for rule in rules:
        value = np.asarray(flat[rule.ours], np.float32)
        out[rule.theirs] = np.ascontiguousarray(LAYOUTS[rule.layout][1](value, value.shape))
    return out
