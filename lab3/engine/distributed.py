"""Several processes training one model: torchrun's environment -> one process group.

`torchrun --nproc_per_node N -m lab3 train ...` starts N copies of `lab3 train`; each finds its
rank in the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...). Without
that environment (a plain `lab3 train`) `Distributed.single()` stands in and nothing changes.

Rules every distributed run follows:
- data: each rank takes its own equal shard of the epoch's seeded permutation (`DeviceLoader`);
- metrics: sums are all-reduced and predictions gathered, so every rank sees the whole split;
- writes: rank 0 alone writes files and prints epoch lines (`RunFolder` asks `is_main`);
- failure: a rank that raises ends the job; torchrun stops the others, the last checkpoint
  (written atomically by rank 0) stays intact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from lab3.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def single(cls) -> Distributed:
        return cls()

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, in place (a no-op for one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        boxes: list[Any] = [None] * self.world_size
        dist.all_gather_object(boxes, value)
        return boxes

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank: each rank's last training steps
        left its own; rank 0's are the ones its checkpoint saves and evaluation must use."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def run_on_main(self, action: Any) -> Any:
        """Run `action()` on rank 0 only and share its result, or its UserError, with all ranks.

        Keeps the ranks in step when rank 0 refuses (say, a run folder that already exists):
        every rank then raises the same error instead of waiting forever for rank 0.
        """
        outcome: tuple[str, Any] = ("ok", None)
        if self.is_main:
            try:
                outcome = ("ok", action())
            except UserError as err:
                outcome = ("error", err)
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise value
        return value


def from_environment(device_type: str) -> Distributed:
    """Join torchrun's process group when torchrun started this process, else one process.

    nccl on CUDA (each process on the GPU of its local rank), gloo on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed.single()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown(group: Distributed) -> None:
    if group.enabled and dist.is_initialized():
        dist.destroy_process_group()


def scaled_lr(lr: float, world_size: int, optimizer: str) -> float:
    """The peak learning rate for `world_size` processes of `batch_size` images each.

    `lr` in a TrainConfig is tuned for one process's batch. With N processes the global batch is
    N times larger: SGD scales the rate linearly (Goyal et al., 2017, with the warm-up every
    schedule here has), AdamW by the square root (its update is already normalised per weight).
    """
    if world_size <= 1:
        return lr
    factor = world_size if optimizer == "sgd" else world_size**0.5
    return lr * factor
