"""fastvgs_jax.host_memory: freed large blocks stay mapped, so reusing them does not fault."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from fastvgs_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocates, touches and frees 128 MB through malloc, then counts the page faults of doing it
# again (fresh mmap pages fault once per 4 KB: ~32 k).
_REUSE = """
import ctypes, resource, sys
from fastvgs_jax import host_memory
changed = host_memory.keep_freed_memory(sys.argv[1])
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 128 << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(size); ctypes.memset(block, 2, size)
print(changed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_on_reuse(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _REUSE, mode], capture_output=True, text=True, cwd=ROOT, check=True
    )
    changed, faults = done.stdout.split()
    return changed, int(faults)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_kept_memory_is_reused_without_page_faults():
    assert _faults_on_reuse("system") == ("False", pytest.approx(32_768, rel=0.2))
    changed, faults = _faults_on_reuse("keep")
    assert changed == "True"
    assert faults < 1_000


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="'huge'"):
        host_memory.keep_freed_memory("huge")
