"""Data-parallel training over N processes on one machine (`training.distributed.processes`).

The activity starts the engine under torchrun (`python -m torch.distributed.run --standalone
--nproc-per-node=N -m engine train ...`), which gives every process RANK, WORLD_SIZE and LOCAL_RANK.
Without them this is one process and every method below is the identity, so the loop in
`engine/train.py` reads the same either way.

Each process takes its share of every micro-batch (rows rank, rank+N, ...), the gradients are
summed over processes once per optimizer step, and the loss is divided by the global answer-token
count: the summed gradient is the one process's gradient, so the global batch, the schedule and
the data order are those of one process. No DistributedDataParallel wrapper: one all_reduce of the
trainable gradients per step is all it would do here, and the model keeps its own class (peft's
`save_pretrained`, `logits_to_keep`). Backends: gloo on CPU, nccl on CUDA (one GPU per process).
"""

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# A collective waits this long for a slow peer (e.g. rank 0 writing final/) before failing the run.
COLLECTIVE_TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, best/, final/ and events."""
        return self.rank == 0

    def share(self, indices: list) -> list:
        """This process's rows of a micro-batch; a share may be empty (fewer rows than processes)."""
        return indices[self.rank :: self.world_size]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sums over processes (float64, so token counts stay exact)."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when it is true on one: a stop request all of them act on together."""
        return flag if self.world_size == 1 else self.sum([float(flag)], device)[0] > 0

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum the trainable gradients over processes, in one flat all_reduce.

        A process whose shares were all empty has no gradients; it adds zeros, so every process
        takes part in the same collective and none waits for ever.
        """
        if self.world_size == 1:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])
        dist.all_reduce(flat)
        offset = 0
        for p in parameters:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def gather(self, value) -> list:
        """Every process's `value` (picklable), in rank order."""
        if self.world_size == 1:
            return [value]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def finish(self) -> None:
        """Wait for every process at the end. No destroy_process_group: with gloo it can hang at exit."""
        if self.world_size > 1:
            dist.barrier()


def die_with_parent() -> None:
    """torchrun starts each process in a session of its own, so killing torchrun's process group
    (cancellation, a heartbeat timeout) would leave the processes training. Linux's parent-death
    signal makes each one die with torchrun instead."""
    if sys.platform != "linux":
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # torchrun died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def join(device: torch.device) -> tuple[Processes, torch.device]:
    """This process's place among torchrun's processes, and its device (CUDA: the GPU LOCAL_RANK)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(), device
    processes = Processes(int(os.environ["RANK"]), world_size, int(os.environ["LOCAL_RANK"]))
    die_with_parent()
    if device.type == "cuda":
        torch.cuda.set_device(processes.local_rank)
        device = torch.device("cuda", processes.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, device_id=device if device.type == "cuda" else None)
    return processes, device

