"""trainer.keep_host_memory: a training step's large buffers are found again, not faulted in afresh."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's mallopt, /proc and page faults are Linux's")

# One "step": buffers of the sizes the paper step frees and allocates again (above glibc's 32 MB
# largest mmap threshold, and between), each written once; eight steps (the heap settles in the
# first few), the page faults of the last.
STEP_FAULTS = """
import json, resource, sys
if sys.argv[1] == "keep":
    from melp.train.host_memory import keep_freed_host_memory
    assert keep_freed_host_memory()
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(8):
    before = faults()
    buffers = [torch.ones(n) for n in (24_000_000, 8_000_000, 2_000_000, 600_000)]
    del buffers
    last = faults() - before
pages = (24_000_000 + 8_000_000 + 2_000_000 + 600_000) * 4 // 4096
print(json.dumps({"faults": last, "pages": pages}))
"""


def run_python(code: str, *args: str, **env: str) -> dict:
    """The JSON line a fresh interpreter prints; ``env`` on top of ours, without torch's huge-page variable."""
    base = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                         env={**base, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kept_memory_is_reused_without_page_faults():
    # huge pages off: one fault per 4 kB page, so the count says whether the heap kept the memory
    system, kept = (run_python(STEP_FAULTS, mode, THP_MEM_ALLOC_ENABLE="0") for mode in ("system", "keep"))
    # the system's settings map the largest buffers afresh every step: each of their pages faults again
    assert system["faults"] > 0.5 * system["pages"], system
    # kept: the last step finds every buffer where the one before freed it
    assert kept["faults"] < 0.02 * kept["pages"], kept


HUGE_PAGES = """
import json
from melp.train.host_memory import keep_freed_host_memory
keep_freed_host_memory()
import torch
buffer = torch.ones(32_000_000)
huge_kb = [int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")]
print(json.dumps({"huge_kb": huge_kb[0]}))
"""


def test_torch_buffers_come_in_huge_pages():
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.is_file() or "[never]" in mode.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    # most of the 128 MB buffer in 2 MB pages (the system's default: none under "madvise")
    assert run_python(HUGE_PAGES)["huge_kb"] > 64_000
