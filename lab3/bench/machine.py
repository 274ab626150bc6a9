"""What a benchmark records about the machine it ran on."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name(threads: int) -> str:
    """The processor's model name and the threads the benchmark used."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({threads} threads)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({threads} threads)"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the processor's with the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name(torch.get_num_threads())
