"""Where a compiled step spends its time, by part of the model, from a jax.profiler trace.

Every instruction of the compiled HLO carries the ``op_name`` of the JAX operation it came
from (``jit(loss_fn)/transpose(jvp(FaSTVGSPlus))/speech_encoder/frontend/conv_1/...``); the
profiler's trace has one event per executed instruction (a fusion, a convolution, a dot). This
module joins the two: each event's duration goes to the part its instruction's op_name names,
forward and backward together (XLA names much of the backward after the forward operation it
differentiates, so the two cannot be told apart reliably from op_names).

    python benchmarks/step_profile.py            # the base SSL step, one JSON line
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

# First match wins: the module path in an op_name → the part it is reported under.
PARTS: tuple[tuple[str, str], ...] = (
    ("threefry", "random_bits"),  # dropout masks, Gumbel noise, span masks (any module)
    ("jit(_uniform)", "random_bits"),
    ("/frontend/", "cnn"),
    ("/positional_conv/", "positional_conv"),
    ("/transformer/", "transformer"),
    ("/quantizer/", "quantizer"),
    ("/target_projection", "ssl_projections"),
    ("/context_projection", "ssl_projections"),
    ("/speech_encoder/", "encoder_other"),  # feature norm / projection, masking, dropout, norm
    ("/audio_pooler/", "vgs_pooler"),
    ("/image_encoder/", "image_encoder"),
)
LOSS_PART = "loss_and_other"  # losses, negatives, gradient glue: no module scope

# Trace events that are the runtime's own bookkeeping, not an HLO instruction.
_RUNTIME_EVENT = re.compile(
    r"^(\$|end: |Thunk|Threadpool|Wait for|Pjit|Slinky|CommonPjRt|PjRt|TfrtCpu"
    r"|ParseArguments|AllocateOutputBuffers|Handle input"  # PjRt's argument handling
    r"|while\b|conditional\b|call\b)"  # control flow: its body's instructions are events too
)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = [^(]*?\w+\((.*?)\)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_OPERAND = re.compile(r"%([\w.\-]+)")
_DEFINED = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")  # a computation's first line
_CALLED = re.compile(r"(?:condition|body|to_apply|calls|branch_computations)=\{?([^}]*?)\}?(?:,|$)")


def instruction_op_names(hlo_text: str, depth: int = 3) -> dict[str, str]:
    """{instruction name: op_name} for the instructions of ``compiled.as_text()``.

    Instructions that XLA made itself (a convolution's kernel gradient rewritten as another
    convolution, the transposes feeding it) carry no op_name; they take the op_name of the
    nearest operand (up to ``depth`` steps back) that has one, else that of their first named
    user (a copy of a parameter), else that of the instruction whose called computation holds
    them (a while loop's counter copies: the loop's op_name).
    """
    named, operands, caller_of, computation_of = {}, {}, {}, {}
    computation = None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        defined = _DEFINED.match(line)
        if not defined:
            continue
        name = defined.group(1)
        computation_of[name] = computation
        for called in _CALLED.findall(line):  # a while's tuple type defeats _INSTRUCTION
            for callee in _OPERAND.findall(called):
                caller_of.setdefault(callee, name)
        op_name = _OP_NAME.search(line)
        if op_name and name not in named:
            named[name] = op_name.group(1)
        match = _INSTRUCTION.match(line)
        operands[name] = _OPERAND.findall(match.group(2)) if match else []
    names = dict(named)
    for name in operands:
        frontier = operands[name]
        for _ in range(depth):
            if name in names:
                break
            found = [named[o] for o in frontier if o in named]
            if found:
                names[name] = found[0]
            frontier = [p for o in frontier for p in operands.get(o, ())]
    users: dict[str, list] = {}
    for name, inputs in operands.items():
        for operand in inputs:
            users.setdefault(operand, []).append(name)
    for name in operands:
        if name in names:
            continue
        used_by = [names[u] for u in users.get(name, ()) if u in names]
        if used_by:  # a copy or broadcast of a parameter: the op that reads it
            names[name] = used_by[0]
            continue
        caller = caller_of.get(computation_of[name])
        while name not in names and caller is not None:
            if caller in names:
                names[name] = names[caller]
            caller = caller_of.get(computation_of.get(caller))
    return names


def part_of(op_name: str) -> str:
    """The part of the model an op_name belongs to (``PARTS``)."""
    for marker, part in PARTS:
        if marker in op_name:
            return part
    return LOSS_PART


def trace_events(trace_dir: str) -> list[dict]:
    """The complete ("X") events of the newest perfetto trace under ``trace_dir`` (written by
    ``jax.profiler.trace(trace_dir, create_perfetto_trace=True)``)."""
    paths = sorted(
        glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    )
    if not paths:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(paths[-1]) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [e for e in events if e.get("ph") == "X"]


def part_seconds(events: list[dict], op_names: dict[str, str], steps: int) -> dict[str, float]:
    """Seconds per step spent in each part's instructions (summed over threads, so on a
    multi-core CPU the parts add up to more than the wall time when instructions overlap).
    Events whose instruction has no op_name count as ``unattributed``."""
    seconds: collections.Counter = collections.Counter()
    for event in events:
        name = event["name"]
        if _RUNTIME_EVENT.match(name):
            continue
        op_name = op_names.get(name)
        part = part_of(op_name) if op_name is not None else "unattributed"
        seconds[part] += event["dur"] * 1e-6 / steps
    return dict(seconds.most_common())


def top_instructions(
    events: list[dict], op_names: dict[str, str], steps: int, count: int = 10
) -> list[dict]:
    """The ``count`` instructions with the most time per step: name, part, milliseconds."""
    seconds: collections.Counter = collections.Counter()
    for event in events:
        if not _RUNTIME_EVENT.match(event["name"]):
            seconds[event["name"]] += event["dur"] * 1e-6 / steps
    return [
        {
            "instruction": name,
            "part": part_of(op_names[name]) if name in op_names else "unattributed",
            "ms": round(1e3 * s, 2),
        }
        for name, s in seconds.most_common(count)
    ]
