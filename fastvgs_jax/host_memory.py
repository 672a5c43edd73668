"""Keep freed host memory in the process, so XLA:CPU's large buffers do not page-fault each step.

glibc's malloc serves requests above a (dynamic, at most 32 MB) threshold, and any request
too large for a thread's arena (64 MB), with fresh ``mmap`` pages and unmaps them on free. A
CPU training step allocates buffers of 100+ MB (the CNN's first layer: 26 M floats per
4 × 4 s batch) anew at every execution, so every step pays a page fault and a kernel zeroing
per 4 KB of them: a 26 M-element ``x + 1`` takes 28 ms that way and 5.7 ms with memory that
stays mapped (``benchmarks/step_vs_hf.py --host_memory`` gives the step's figure). Reusing
freed memory needs one arena (so every thread's large buffers come from the same heap), no
``mmap`` for large blocks, and no trimming of the heap's top. The price: the process keeps its
peak heap until it exits, which a training process reaches every step anyway.

Call ``keep_freed_memory()`` at the top of a main, before JAX starts its threads. It is a
no-op where the C library is not glibc (``mallopt`` missing).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# mallopt's int −1 becomes glibc's size_t threshold SIZE_MAX: the heap top is never trimmed
# (2**31 − 1, the largest positive int, still trims a 12-layer step's 2+ GB of freed buffers).
_NEVER_TRIM = -1

MODES = ("keep", "system")


def keep_freed_memory(mode: str = "keep") -> bool:
    """``"keep"``: one arena, no mmap for large blocks, no trimming; ``"system"``: leave the
    C library's defaults. True when the allocator was changed."""
    if mode not in MODES:
        raise ValueError(f"unknown host memory mode {mode!r}; expected one of {MODES}")
    if mode == "system":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
