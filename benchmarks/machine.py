"""What the benchmark scripts record about the machine they ran on."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name(threads: int) -> str:
    """The processor's model name and the threads the benchmark used."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({threads} threads)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({threads} threads)"
