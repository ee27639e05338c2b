"""Data-parallel training on torch.distributed: the process group of one training job.

A job of N processes is launched by lnstab.launch (``lnstab train ... --processes N``, and the
workflow), which sets RANK, WORLD_SIZE and LOCAL_RANK as torchrun would; a job without them is a
single process and nothing here talks to anyone. Backend: NCCL on GPUs, gloo on CPUs.

Every rank draws the same global batch (the training generator is replicated) and trains on its
own slice of it, so the same config trains on the same data whatever N is (equal up to the
rounding of the gradient's sum over the ranks). Rank 0 alone writes
the run folder, evaluates and probes; the others follow its decisions through ``any``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes outputs, evaluates and probes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (the value itself on one process)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return (t / self.world_size).item()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @property
    def device(self) -> torch.device:
        """Where this rank's collectives run: its GPU under NCCL, the CPU under gloo."""
        if self.distributed and dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def from_environment(device_type: str) -> Group:
    """The job's process group, joined once: from RANK / WORLD_SIZE / LOCAL_RANK (lnstab.launch sets them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Group()
    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return group


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def data_parallel(model: torch.nn.Module, group: Group, device: torch.device):
    """The model wrapped for training by DDP (gradients averaged over the ranks), or None on one
    process; evaluation and probes, on rank 0 alone, go through the model itself."""
    if not group.distributed:
        return None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def rank_micro_batches(x: torch.Tensor, y: torch.Tensor, group: Group, micro: int, device: torch.device):
    """This rank's micro-batches of a step's global batch (x, y). Every rank draws the whole batch
    from the same generator and keeps its own contiguous share, so the batch, and hence the
    training, is the same whatever the number of ranks and micro-batches."""
    share = x.shape[0] // group.world_size
    x, y = x[group.rank * share:(group.rank + 1) * share], y[group.rank * share:(group.rank + 1) * share]
    return [(x[i:i + micro].to(device), y[i:i + micro].to(device)) for i in range(0, share, micro)]
