"""Training across processes with torch.distributed: the process group, its collectives, and two launchers.

The one owner of "which process am I": `setup` joins the process group that torchrun (or
`run_local`) describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT: the
launcher's contract, read here and nowhere else) and returns a `Context`: rank, world size,
`is_main`, and the collectives the fit loop needs (barrier, broadcast of an object or a tensor,
all-reduce). Without a launcher it is one process and every collective is the identity, so
`forecaster.model.fit.fit` reads the same either way.

Launchers: `torchrun_command` re-launches a command line under torchrun (several machines, every
rank runs the whole command and rank 0 alone logs); `run_local` starts N processes on this machine
from a running program (the caller keeps its MLflow run, its progress display and its results;
the processes only train).
"""

from __future__ import annotations

import atexit
import inspect
import logging
import math
import os
import queue
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from forecaster.config import TrainConfig
from forecaster.errors import ForecasterError
from forecaster.model.device import resolve_device

log = logging.getLogger(__name__)
T = TypeVar("T")
Backend = Literal["gloo", "nccl"]
# Launcher options of `forecaster train` that re-launch it; they must not reach the re-launched command.
LAUNCH_OPTIONS = ("--nnodes", "--rdzv-endpoint")
LOCAL_HOST = "127.0.0.1"
POLL_S = 0.1  # how often run_local looks at its processes while relaying their reports
# A collective that waits this long means a rank is gone (crashed, or stuck outside training): fail
# instead of hanging for the library default of 30 minutes. Generous: the longest gap between two
# collectives is one validation pass, or a tracker write on rank 0.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
DDP_PARAMETERS = inspect.signature(DistributedDataParallel.__init__).parameters


@dataclass(frozen=True)
class Context:
    """This process's place in the group; collectives are the identity for a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, saves and registers."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: torch.device) -> torch.device:
        """The device of this rank: one GPU per local rank under CUDA, else `requested` itself."""
        if self.is_distributed and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` in DistributedDataParallel (gradients averaged across ranks in backward), or
        `module` itself in one process. Buffers are not broadcast at every forward: ours are
        constants (the quantile prior), and the broadcast would cost one collective per step."""
        if not self.is_distributed:
            return module
        ids = [device.index] if device.type == "cuda" else None
        # torch 2.13 renamed broadcast_buffers (and warns about the old name); older torch knows only that.
        name = "forward_sync_buffers" if "forward_sync_buffers" in DDP_PARAMETERS else "broadcast_buffers"
        options: dict[str, Any] = {name: False}
        return DistributedDataParallel(module, device_ids=ids, **options)

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def from_main(self, make: Callable[[], T]) -> T:
        """make() run on rank 0 alone (loading the data once, say); its result on every rank."""
        if not self.is_distributed:
            return make()
        holder: list[Any] = [make() if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def broadcast_object(self, obj: T, src: int = 0) -> T:
        """Rank `src`'s `obj` on every rank (pickled; for small things: a decision, a data frame)."""
        if not self.is_distributed:
            return obj
        holder: list[Any] = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def broadcast_tensor(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank `src`'s values in `tensor` on every rank (in place; returned for chaining)."""
        if self.is_distributed:
            dist.broadcast(tensor, src=src)
        return tensor

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, on every rank (in place; returned for chaining)."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks, on every rank (in place; returned for chaining)."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    def require_main(self, what: str) -> None:
        """Refuse `what` (logging, saving, registering) on any rank but 0, loudly."""
        if not self.is_main:
            raise ForecasterError(
                f"{what}: runs on rank 0 only; rank {self.rank} of {self.world_size} takes part in the "
                "training alone (forecaster.run.steps.train_other_rank)"
            )


@dataclass(frozen=True)
class EpochPlan:
    """How an epoch's permutation becomes steps on `world` ranks.

    `train.batch_size` is the global batch: each rank takes batch_size // world of it, so N
    processes take the same steps on the same windows as one (rank r's share of global batch b is
    positions b*B + r, b*B + r + world, ... of the permutation). The permutation is cut to a
    multiple of `world` (at most world - 1 windows left out per epoch, different ones each epoch):
    every rank then takes the same number of steps (a rank with one more would wait forever for
    the others' gradients) with equal shares (so the mean of the ranks' losses is the batch's)."""

    rank_batch: int
    world: int
    used: int
    n_batches: int

    @classmethod
    def of(cls, n_windows: int, config: TrainConfig, world: int) -> EpochPlan:
        rank_batch = config.batch_size // world
        if rank_batch == 0:
            raise ValueError(
                f"batch_size: the global batch must be at least the {world} processes, got {config.batch_size}"
            )
        if config.batch_size % world:
            log.warning(
                "batch_size %d is not a multiple of the %d processes: the global batch is %d",
                config.batch_size,
                world,
                rank_batch * world,
            )
        used = n_windows - n_windows % world
        if used == 0:
            raise ValueError(f"train: {n_windows} training windows cannot be shared by {world} processes")
        n_batches = math.ceil(used // world / rank_batch)
        if config.max_batches_per_epoch:
            n_batches = min(n_batches, config.max_batches_per_epoch)
        return cls(rank_batch, world, used, n_batches)

    def shard(self, order: np.ndarray, rank: int) -> np.ndarray:
        """Rank `rank`'s positions of an epoch's permutation, in step order."""
        return order[: self.used][rank :: self.world]

    @property
    def windows_per_epoch(self) -> int:
        return min(self.used, self.n_batches * self.rank_batch * self.world)


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of rank `rank` after the network is built: dropout and teacher forcing draw
    different numbers on each rank, as they do for different windows in one process."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def launched() -> bool:
    """True in a process started by a launcher (torchrun or run_local) for a group of 2 or more."""
    return (dist.is_available() and dist.is_initialized()) or int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Context:
    """The context of the group this process has joined (one process when it has joined none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
    )


def choose_backend(requested: str, device: torch.device) -> Backend:
    """auto: nccl for CUDA, gloo for the CPU; an explicit choice is checked against the device."""
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if requested == "nccl" and device.type != "cuda":
        raise ValueError(f"backend: 'nccl' needs CUDA, but training runs on '{device}'; use 'gloo' or 'auto'")
    if requested not in ("gloo", "nccl"):
        raise ValueError(f"backend: expected 'auto', 'gloo' or 'nccl', got '{requested}'")
    return requested  # type: ignore[return-value]


def setup(backend: str = "auto", device: torch.device | None = None) -> Context:
    """Join the process group the launcher described (once per process), or one process without one.

    Idempotent: the CLI joins before loading data, `fit` calls it again and gets the same group.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if _FINISHED:  # joining again would wait for ranks that have left: fail instead of hanging
        raise RuntimeError("distributed: this process already finished its process group (distributed.finish)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = choose_backend(backend, device or torch.device("cpu"))
    if chosen == "nccl":
        torch.cuda.set_device(local_rank)  # before the group: NCCL binds each rank to its own GPU
    dist.init_process_group(chosen, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    atexit.register(teardown)
    log.info("process group: rank %d of %d (%s)", rank, world, chosen)
    return current()


def setup_for(config: TrainConfig) -> Context:
    """`setup` with the backend and device a training configuration asks for."""
    return setup(config.backend, resolve_device(config.device))


def teardown() -> None:
    """Leave the process group (torch warns at exit about a group left open)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_FINISHED = False


def finish() -> None:
    """Every rank leaves the group here, once a training job's last collective is done (the end of
    its fits): at the same point on every rank, as torch asks of destroy_process_group. Left to
    interpreter exit, a rank other than 0 left while rank 0 still evaluated and registered, and one
    such rank was seen aborting (SIGABRT) under load. Nothing in this process may join a group after."""
    global _FINISHED
    if dist.is_available() and dist.is_initialized():
        teardown()
        _FINISHED = True


def check_launch(nnodes: int, rdzv_endpoint: str | None) -> None:
    """Several machines meet at a rendezvous: ``--nnodes N`` > 1 needs ``--rdzv-endpoint HOST:PORT``
    (torchrun would otherwise wait for machines that never come), and the endpoint must be one."""
    if nnodes < 1:
        raise ValueError(f"--nnodes: expected 1 or more machines, got {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError(
            f"--nnodes {nnodes}: needs --rdzv-endpoint HOST:PORT, the rendezvous on one of the machines "
            "(run the same command on each); one machine needs neither (--nproc-per-node N)"
        )
    if rdzv_endpoint is not None:
        host, _, port = rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"--rdzv-endpoint: expected HOST:PORT (port 1..65535), got {rdzv_endpoint!r}")


def torchrun_command(args: Sequence[str], nnodes: int, nproc_per_node: int, rdzv_endpoint: str | None) -> list[str]:
    """`python -m torch.distributed.run ... -m forecaster <args>` with the launcher options taken out.

    `args` is the command line after the program name (``train --data x.csv --nnodes 2 ...``).
    Every machine runs the same line; the c10d rendezvous at `rdzv_endpoint` (host:port of one of
    them) gathers `nnodes` x `nproc_per_node` ranks. Without an endpoint: one machine, standalone.
    """
    check_launch(nnodes, rdzv_endpoint)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg  # "--nnodes 2" drops the value too, "--nnodes=2" is one item
            continue
        kept.append(arg)
    launcher = ["-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}"]
    if rdzv_endpoint:
        launcher += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    else:
        launcher += ["--standalone"]
    return [sys.executable, *launcher, "-m", "forecaster", *kept]


def free_port() -> int:
    """A TCP port nobody listens on now (the group's rendezvous; bound again within a second)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return int(sock.getsockname()[1])


Send = Callable[[Any], None]


def run_local(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    nprocs: int,
    on_message: Callable[[Any], None] | None = None,
) -> list[T]:
    """Run ``fn(*args, send)`` in `nprocs` new processes on this machine, joined in one group.

    Each process gets the environment torchrun would give it, so `setup` (and `fit`) work
    unchanged in it. `send(message)` hands a message to the caller, which passes it to
    `on_message` as it arrives (rank 0's progress and metrics, relayed to the caller's tracker
    and display). Returns every rank's return value, by rank. A failed process stops the others
    and raises a ForecasterError naming the rank and the error. `args` are pickled to the processes.
    """
    threads = max(1, torch.get_num_threads() // nprocs)  # the caller's CPU share, split; no oversubscription
    messages: Any = torch_mp.get_context("spawn").Queue()
    port = free_port()
    processes = torch_mp.start_processes(
        _local_rank_main,
        args=(fn, args, nprocs, port, threads, messages),
        nprocs=nprocs,
        join=False,
        start_method="spawn",
    )
    results: dict[int, T] = {}
    finished = False
    try:
        while not finished or len(results) < nprocs:
            try:
                kind, rank, payload = messages.get(timeout=POLL_S)
            except queue.Empty:
                if finished:  # every process exited cleanly but a result never came: a bug, not a wait
                    raise ForecasterError(
                        f"training processes: ranks {sorted(set(range(nprocs)) - set(results))} exited without a result"
                    ) from None
                finished = processes.join(timeout=0, grace_period=1.0)
                continue
            if kind == "result":
                results[rank] = payload
            elif on_message is not None:
                on_message(payload)
    except torch_mp.ProcessRaisedException as exc:
        cause = str(exc).strip().splitlines()[-1]
        raise ForecasterError(f"training process {exc.error_index} of {nprocs} failed: {cause}") from exc
    except torch_mp.ProcessExitedException as exc:
        raise ForecasterError(f"training process {exc.error_index} of {nprocs}: {exc}") from exc
    return [results[rank] for rank in range(nprocs)]


def _local_rank_main(
    local_rank: int, fn: Callable[..., Any], args: tuple[Any, ...], nprocs: int, port: int, threads: int, out: Any
) -> None:
    """One process of run_local: torchrun's environment, the call, its result to the caller."""
    os.environ.update(
        {
            "MASTER_ADDR": LOCAL_HOST,
            "MASTER_PORT": str(port),
            "RANK": str(local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(nprocs),
            "LOCAL_WORLD_SIZE": str(nprocs),
        }
    )
    torch.set_num_threads(threads)
    try:
        value = fn(*args, lambda message: out.put(("message", local_rank, message)))
        out.put(("result", local_rank, value))
    finally:
        teardown()
