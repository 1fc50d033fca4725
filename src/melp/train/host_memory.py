"""Keep freed host memory for reuse between training steps instead of handing it back to the OS.

A CPU training step allocates and frees the same large buffers every step (activations, their
gradients, the text model's 94 MB embedding gradient, the positional convolution's spectra). By
default glibc maps every block above its mmap threshold (at most 32 MB) afresh and unmaps it on
free, and trims the heap's top as soon as 128 kB lie free there, so each step touches the same
gigabytes as new pages: the paper step took 0.17-0.56 M page faults and 1.3-5.9 s of kernel time
(docs/speed.md). Two settings keep that memory:

- torch's ``THP_MEM_ALLOC_ENABLE``: blocks of 2 MB and more are aligned and advised as
  transparent huge pages (one fault per 2 MB instead of per 4 kB). torch reads it at its first CPU
  allocation, so it has to be set before any tensor exists;
- glibc's ``mallopt``: no mmap for large blocks, and the heap's top kept up to 2 GB, so a freed
  block is found again by the next step's allocation.

The cost is that the process keeps its peak footprint (as a GPU's caching allocator does); the
paper step's peak resident memory went from 6.6-6.7 to 7.2 GB. ``trainer.keep_host_memory: false``
leaves both settings as the system has them.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GB free at the heap's top
# The same two settings for a process started afresh (environment variables; glibc's tunables)
FRESH_PROCESS_ENV = {"THP_MEM_ALLOC_ENABLE": "1",
                     "GLIBC_TUNABLES": f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"}


def keep_freed_host_memory() -> bool:
    """Apply both settings to this process (and the workers it forks); True where glibc took them.

    Idempotent. Where torch has already allocated, its huge-page setting stays as it was read."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", FRESH_PROCESS_ENV["THP_MEM_ALLOC_ENABLE"])
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the symbols already loaded: the C library's among them, no search for it
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and other C libraries: no such mallopt settings
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
