"""Host memory for CPU runs: freed blocks are kept and reused instead of being handed back to the kernel.

glibc serves every block above its mmap threshold (at most 32 MiB) with fresh pages and unmaps them when the block
is freed, so each large temporary of a CPU learner (the (M, V) logits and their gradient, the tied embedding's
(V, D) gradient) takes one page fault per 4 KiB page on first touch, again every micro-batch. CUDA runs avoid this
through PyTorch's caching allocator; on CPUs PyTorch's own launcher (``python -m torch.backends.xeon.run_cpu``)
preloads jemalloc or tcmalloc for the same reason. :func:`keep_freed_memory` gets the same effect from the glibc
already loaded, with ``mallopt``: no mmap'd blocks (``M_MMAP_MAX`` 0) and no trimming of the heap's top
(``M_TRIM_THRESHOLD`` at its maximum). The process's resident memory then stays at its high-water mark between
steps instead of dropping back. Measured effect (faults, fwd+bwd time, memory): ``docs/performance.md``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_MAX = -4
_OWN_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_applied: bool | None = None


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None  # not glibc (macOS, musl, Windows): nothing to tune
    return libc


def keep_freed_memory() -> bool:
    """Make this process's glibc malloc keep freed memory for reuse; returns whether it now does.

    Called by the training and evaluation recipes when they run on a CPU. It changes nothing, and says so in the
    log, where the user already chose: any ``MALLOC_*_`` tunable or a ``glibc.malloc`` entry of
    ``GLIBC_TUNABLES`` in the environment, or jemalloc / tcmalloc / mimalloc in ``LD_PRELOAD``. Not glibc
    (macOS, musl): nothing to do, returns False. Idempotent.
    """
    global _applied
    if _applied is not None:
        return _applied
    preload = os.environ.get("LD_PRELOAD", "")
    chosen = [k for k in _OWN_SETTINGS if k in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    chosen += [f"LD_PRELOAD={name}" for name in _OTHER_ALLOCATORS if name in preload]
    if chosen:
        log.info("host memory: leaving malloc as set (%s)", ", ".join(chosen))
        _applied = False
        return _applied
    libc = _glibc()
    _applied = libc is not None and bool(libc.mallopt(_M_MMAP_MAX, 0)) \
        and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if _applied:  # said only when glibc took both settings
        log.info("host memory: freed blocks kept for reuse (glibc mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)")
    return _applied
