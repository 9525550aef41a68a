"""CPU runs keep freed memory for reuse (:mod:`r1zero.run.hostmem`): a freed large tensor's pages are reused without
page faults, and a user's own malloc choice is left alone."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from r1zero.run import hostmem

# A fresh process each (mallopt changes the whole process): minor page faults of a learner-like loop, whose
# (512, 32768) fp32 logits and their gradient (64 MiB each, above glibc's largest mmap threshold of 32 MiB) are made
# and freed every micro-batch. By default each is a fresh mapping, faulted in page by page every time.
PROBE = """
import json, resource, sys, torch
from r1zero.run.hostmem import keep_freed_memory
from r1zero.model.logprob import token_logprobs
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
h = torch.randn(512, 64, requires_grad=True)
W = torch.randn(32768, 64, requires_grad=True)
targets = torch.randint(0, 32768, (512,))
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    token_logprobs(h @ W.t(), targets).sum().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc")


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_freed_pages_are_reused_without_faults():
    kept, system = _probe("keep"), _probe("system")
    assert kept["applied"] is True and system["applied"] is False
    steady_kept, steady_system = sum(kept["faults"][2:]), sum(system["faults"][2:])  # after two warm-up steps
    if steady_system < 6 * 16384:  # e.g. transparent huge pages always on: fresh memory is cheap there anyway
        pytest.skip(f"the system allocator faults only {system['faults']} pages per step here")
    # observed: ~33k faults every step by default; 0 in most steps kept (a 64 MiB re-fault now and then, where
    # glibc's aligned allocations do not fit the hole an equal one left)
    assert steady_kept * 4 < steady_system, (kept, system)


@glibc
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "1000000"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=5"},
                                 {"LD_PRELOAD": "/opt/lib/libjemalloc.so.2"}])
def test_a_users_malloc_choice_is_left_alone(monkeypatch, caplog, env):
    calls = []
    monkeypatch.setattr(hostmem, "_applied", None)
    monkeypatch.setattr(hostmem, "_glibc", lambda: calls.append(1))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level("INFO", logger="r1zero.run.hostmem"):
        assert hostmem.keep_freed_memory() is False
    assert calls == [] and "leaving malloc as set" in caplog.text
    assert hostmem.keep_freed_memory() is False  # decided once


def test_not_glibc_changes_nothing(monkeypatch):
    monkeypatch.setattr(hostmem, "_applied", None)
    monkeypatch.setattr(hostmem, "_glibc", lambda: None)
    for key in ("LD_PRELOAD", "GLIBC_TUNABLES", *hostmem._OWN_SETTINGS):
        monkeypatch.delenv(key, raising=False)
    assert hostmem.keep_freed_memory() is False
