"""Data-parallel training over torch.distributed: set-up from torchrun's environment, sharding, collectives.

One process per device: NCCL on CUDA (one GPU per local rank), gloo on the CPU. `train.batch_size` is the
global batch. Every rank runs the single-process run's random stream (the same seed, restored from the
same checkpoint), so every draw is made for the whole global batch and each rank keeps its own rows:
- data: the single-process run's batch of each step (the same permutation) cut into `world` contiguous
  slices, one per rank (`shard`); the uint8 data set stays whole on every device;
- noise, flips and DiffAugment's parameters: drawn for the global batch, this rank's rows kept (`local`).
Gradients are averaged over the ranks right before each optimizer step (an optimizer step pre-hook: one
flat all-reduce per network and step), so the weights stay equal on every rank. BatchNorm normalises
with per-rank batch statistics; its running statistics are averaged at every epoch end. Rank 0 alone
runs callbacks and writes files. `Dist()` is one process, and then every method is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
import torch.distributed as tdist
from torch import nn

from ganops.config import check_batch_split
from ganops.errors import GanopsError, one_line
from ganops.runtime import resolve_device

WORLD_KEY = "world size (torchrun: --nnodes x --nproc_per_node)"


class PeerLostError(GanopsError):
    """Another rank stopped answering (killed, crashed, out of memory): this one stops too."""

    exit_code = 1


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """A failed collective means a peer is gone: one line (the last checkpoint stays), not a traceback."""
    try:
        yield
    except RuntimeError as error:  # DistBackendError and gloo's socket errors are RuntimeErrors
        raise PeerLostError(f"rank {tdist.get_rank()}: lost the other training processes during {what} "
                            f"({one_line(error, limit=200)}); the last checkpoint is kept: run again to resume") from error


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. The default is one process, and every method is then a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    active: bool = False  # a process group is initialised (torchrun), even with one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def share(self) -> tuple[int, int]:
        return self.world_size, self.rank

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a draw made for the global batch (one process: all of it, the same tensor)."""
        if self.world_size == 1:
            return rows
        size = rows.shape[0] // self.world_size
        return rows[self.rank * size:(self.rank + 1) * size]

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's columns of a steps x global-batch index table: contiguous slices of each batch."""
        return self.local(order.T).T

    def attach(self, optimizers: dict[nn.Module, torch.optim.Optimizer]) -> None:
        """Rank 0's weights everywhere, then the gradients averaged right before every step of each optimizer."""
        if not self.active:
            return
        with _collective("the start-up broadcast"):
            for module in optimizers:
                for tensor in module.state_dict().values():
                    tdist.broadcast(tensor, 0)
        for optimizer in optimizers.values():
            optimizer.register_step_pre_hook(self._average_before_step)

    def _average_before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self._average_flat(grads, "a gradient all-reduce")

    def average_(self, tensor: torch.Tensor, what: str = "a metric all-reduce") -> torch.Tensor:
        """The mean over the ranks, in place (the ranks' metrics become the global batch's)."""
        if self.active:
            with _collective(what):
                tdist.all_reduce(tensor)
            tensor.div_(self.world_size)
        return tensor

    def average_buffers(self, *modules: nn.Module) -> None:
        """Running statistics (BatchNorm) as the mean of the ranks', so that every rank evaluates alike."""
        for module in modules:
            self._average_flat([b for b in module.buffers() if b.is_floating_point()], "a buffer all-reduce")

    def _average_flat(self, tensors: list[torch.Tensor], what: str) -> None:
        if not self.active or not tensors:
            return
        flat = self.average_(torch._utils._flatten_dense_tensors(tensors), what)  # one message, not one per tensor
        for tensor, mean in zip(tensors, torch._utils._unflatten_dense_tensors(flat, tensors)):
            tensor.copy_(mean)

    def from_main(self, read: Callable[[], Any]) -> Any:
        """What `read()` returns on rank 0, on every rank (a checkpoint: only rank 0 needs to see the file).

        A GanopsError of rank 0's read is raised on every rank, so that all stop alike.
        """
        if not self.active:
            return read()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box = [("value", read())]
            except GanopsError as error:
                box = [("error", str(error))]
        with _collective("the checkpoint broadcast"):
            tdist.broadcast_object_list(box, 0)
        kind, value = box[0]
        if kind == "error":
            raise GanopsError(value)
        return value

    def map_location(self, device: torch.device) -> torch.device:
        """Rank 0 reads a checkpoint to the CPU for the broadcast (pickled CUDA tensors land on its GPU)."""
        return torch.device("cpu") if self.active else device

    def cuda_rng_states(self, device: torch.device) -> list[torch.Tensor]:
        if device.type != "cuda":
            return []
        # One process: every GPU's (as before). Several: this rank's GPU alone; touching the others would
        # open a CUDA context on each of them from rank 0.
        return [torch.cuda.get_rng_state(device)] if self.active else torch.cuda.get_rng_state_all()

    def set_cuda_rng_states(self, states: list[torch.Tensor], device: torch.device) -> None:
        if device.type != "cuda" or not states:
            return
        if self.active:  # every rank continues rank 0's stream (the one a single process would have)
            torch.cuda.set_rng_state(states[0].cpu(), device)
        else:
            torch.cuda.set_rng_state_all([s.cpu() for s in states])


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def from_environment(device_name: str, batch_size: int, timeout_s: int) -> tuple[Dist, torch.device]:
    """The job this process belongs to: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) or none.

    Without them, one process on `device_name` exactly as before. With them, a process group on NCCL
    (CUDA, the GPU of this local rank) or gloo (CPU) whose collectives give up after `timeout_s`.
    """
    if not under_torchrun():
        return Dist(), resolve_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    check_batch_split(batch_size, world, WORLD_KEY)  # every rank fails alike, before any rank waits for another
    device = resolve_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise GanopsError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                              f"allowed: --nproc_per_node up to {torch.cuda.device_count()} on this machine")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        tdist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s),
                                 device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as error:
        raise GanopsError(f"rank {rank} could not join the {world}-process group at "
                          f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within train.dist_timeout "
                          f"({timeout_s} s): {one_line(error, limit=200)}") from error
    return Dist(rank, world, local_rank, active=True), device


def shutdown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


def timed_all_reduce(numel: int, device: torch.device, repeats: int) -> float:
    """Seconds per all-reduce (sum) of `numel` float32 values over the initialised group: for the benchmark."""
    flat = torch.ones(numel, device=device)
    tdist.all_reduce(flat)  # warm-up: connections, buffers
    tdist.barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        tdist.all_reduce(flat)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def report_failure(message: str) -> bool:
    """In a torchrun worker: record `message` for the launcher (torchelastic's error file). True: print it here.

    Only one process prints: rank 0 under a plain `torchrun`, none under `launch` (the launcher prints it).
    """
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        import json

        with open(error_file, "w") as handle:
            json.dump({"message": {"message": message, "extraInfo": {"timestamp": str(int(time.time()))}}}, handle)
    return os.environ.get("RANK", "0") == "0" and not os.environ.get(LAUNCHED_ENV)


# ---------------------------------------------------------------------------------------------------
# The launcher: torchrun's own engine (torch.distributed.run), started by the train stage itself, so
# that `python -m pipeline.train` (and DVC's stage) can run N processes and still fail in one line.

LAUNCHED_ENV = "GANOPS_LAUNCHED"  # set for the workers of `launch`: the launcher reports their failures


class WorkerFailure(GanopsError):
    """A worker process failed; its own line came back through torchelastic's error file."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def launch(torchrun_args: list[str], nproc_per_node: int, batch_size: int, timeout_s: int, module: str,
           worker_env: Optional[dict[str, Optional[str]]] = None) -> None:
    """Run `python -m module` in torchrun's worker processes; `torchrun_args` are torchrun's own options.

    train.nproc_per_node comes first, so `--nproc_per_node` on the command line wins. Rendezvous timeouts
    default to train.dist_timeout. A failure of any worker stops all of them (torchrun's agent) and
    becomes one line here: the first failure's own message, or how it died. `worker_env`: variables to
    set (None: unset) for the workers only.
    """
    import io
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args, parse_min_max_nnodes

    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            args = parse_args([f"--nproc_per_node={nproc_per_node}", *torchrun_args, "-m", module])
    except SystemExit:  # argparse's usage and error lines, in `usage`
        said = usage.getvalue().strip().splitlines()[-1:] or [""]
        raise GanopsError(f"not torchrun options: {' '.join(torchrun_args)} ({said[0].split(': error: ')[-1]}; "
                          f"see `torchrun --help`)") from None
    min_nodes, max_nodes = parse_min_max_nnodes(args.nnodes)
    if args.rdzv_backend == "static" and not args.rdzv_endpoint and args.master_port is None and max_nodes == 1:
        # What the torchrun command does for one machine: a rendezvous on a free port of this one.
        args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id = "c10d", "127.0.0.1:0", str(uuid.uuid4())
    if args.master_port is None:
        args.master_port = 29500  # torchrun's default, for the static rendezvous of several machines
    per_node: Optional[int] = int(args.nproc_per_node) if str(args.nproc_per_node).isdigit() else None
    if min_nodes == max_nodes and per_node is not None:
        check_batch_split(batch_size, max_nodes * per_node, WORLD_KEY)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // (per_node or 1))))
    config, command, command_args = config_from_args(args)
    for key in ("join_timeout", "read_timeout"):
        config.rdzv_configs.setdefault(key, timeout_s)
    os.environ[LAUNCHED_ENV] = "1"
    for name, value in (worker_env or {}).items():
        os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its report is the line below
    try:
        elastic_launch(config, command)(*command_args)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        if failure.exitcode < 0:
            raise WorkerFailure(f"rank {rank} (pid {failure.pid}) was killed by {failure.signal_name()}, so every "
                                f"rank stopped; the last checkpoint is kept: run again (any process count) to resume",
                                1) from None
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        raise WorkerFailure(message if failure.exitcode == 2 else f"rank {rank} exited with code {failure.exitcode}: "
                            f"{message}", 2 if failure.exitcode == 2 else 1) from None
    except RendezvousError as error:
        reason = one_line(error.__cause__ or error, limit=200).rstrip(".")  # the cause names the host and port
        raise GanopsError(f"torchrun rendezvous at {args.rdzv_endpoint or 'localhost'} ({args.rdzv_backend}) failed "
                          f"within {timeout_s} s (train.dist_timeout): {reason}; check the host:port and that every "
                          f"node runs the same command") from None
