"""Say up front when the GPU recipe is about to train on the CPU.

The full profile is sized for a GPU (224 px, 40 epochs): on the CPU it takes hours. The usual
cause is not a missing GPU but a driver older than the CUDA build of the installed torch, in
which case torch silently reports no GPU; the run would then start on the CPU without a word.
"""

from __future__ import annotations

import shutil

import torch

# The profiles whose settings assume a GPU.
GPU_PROFILES = frozenset({"full"})


def cpu_fallback_notice(profile: str, device: str = "auto") -> str | None:
    """One line saying that `profile` will train on the CPU and why, or None where it will not
    (a GPU is visible, the device was chosen explicitly, or the profile is a CPU one)."""
    if profile not in GPU_PROFILES or device != "auto" or torch.cuda.is_available():
        return None
    if shutil.which("nvidia-smi") and torch.version.cuda:
        why = (
            f"an NVIDIA driver is installed, but torch {torch.__version__} (a CUDA "
            f"{torch.version.cuda} build) cannot use it: the driver is probably older than "
            "that CUDA needs (`nvidia-smi` shows its version)"
        )
    else:
        why = "torch sees no CUDA GPU on this machine"
    return (
        f"the {profile} profile is the GPU recipe, but it will train on the CPU ({why}); "
        "that takes hours: Ctrl-C now, or use --profile quick for the CPU"
    )
