"""Running as one of several processes of a torchrun launch (or as the only one): the rank, its device, and the
few collectives xray_to_hdf5.py needs. With a single process every collective is a no-op."""
import os

import torch
import torch.distributed as dist

from utils.device import resolve_device
from utils.errors import UserError


class Ranks:
    """This process's place in a torchrun launch (or a single process), and the few collectives needed."""

    def __init__(self, rank, world_size, device):
        self.rank, self.world_size, self.device = rank, world_size, device

    @classmethod
    def from_environment(cls, device_name):
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        device = resolve_device(device_name, local_rank)  # a bare "cuda" is this process's GPU
        if device.type == "cuda" and local_processes > torch.cuda.device_count():
            # every process says so (not only those whose LOCAL_RANK has no GPU), before any process group
            raise UserError(f"torchrun started {local_processes} processes on this machine, which has "
                            f"{torch.cuda.device_count()} GPU(s): pass --nproc_per_node "
                            f"{torch.cuda.device_count()} at most")
        if world_size > 1 and device.type == "cuda" and device_name and torch.device(device_name).index is not None:
            # every process would take the same GPU and NCCL would hang or fail: one line instead
            raise UserError(f"--device {device_name}: under torchrun every process takes its own GPU, "
                            "cuda:LOCAL_RANK; pass --device cuda (or no --device)")
        if world_size == 1:
            return cls(0, 1, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size, device)

    def rank0_first(self, function):
        """``function()`` on rank 0, then on the other ranks (so that a download happens once); its UserError on
        rank 0 stops every rank."""
        result = [None]
        self.broadcast_outcome(lambda: result.__setitem__(0, function()))
        if self.rank != 0:
            result[0] = function()
        return result[0]

    def broadcast_outcome(self, function):
        """Run ``function`` on rank 0 and give every rank its result, or the same UserError."""
        outcome = [None]
        if self.rank == 0:
            try:
                outcome = [("ok", function())]
            except UserError as err:
                outcome = [("error", str(err))]
        if self.world_size > 1:
            dist.broadcast_object_list(outcome, src=0)
        status, value = outcome[0]
        if status == "error":
            raise UserError(value)
        return value

    def all_gather_object(self, obj):
        if self.world_size == 1:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def gather_blocks(self, embeddings, batch_size, dim, lengths):
        """Each rank's (lengths[rank], D) block -> their concatenation in rank order, as numpy (B * ranks, D)."""
        if self.world_size == 1:
            return embeddings.cpu().numpy()
        padded = torch.zeros(batch_size, dim, device=self.device)  # (B, D): every rank sends the same shape
        if embeddings is not None:
            padded[:len(embeddings)] = embeddings
        blocks = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded)
        return torch.cat([b[:n] for b, n in zip(blocks, lengths)]).cpu().numpy()

    def barrier(self):
        if self.world_size > 1:
            dist.barrier()

    def close(self):
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
