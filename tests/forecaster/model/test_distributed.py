"""forecaster.model.distributed and the fit loop across processes (CPU, gloo, 2 ranks on 127.0.0.1).

Across ranks results are compared with equality: every rank applies the same averaged gradients
and rank 0's decisions. Against one process they are compared with a tolerance: see
`test_two_processes_take_the_same_steps_as_one_process_with_the_same_global_batch`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from factories import random_ohlc, to_csv

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.errors import ForecasterError
from forecaster.model import distributed
from forecaster.model import fit as train_module
from forecaster.model.feed import WindowSet
from forecaster.model.fit import EpochStats, FitHooks, fit

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import MlflowStore

DATA = DataConfig(lookback=12, horizon=3)
MODEL = ModelConfig(arch="gru", hidden_size=8)
# Global batch 32: each of two ranks takes 16 of every batch.
TRAIN = TrainConfig(epochs=3, batch_size=32, warmup_steps=2, seed=7, device="cpu", patience=5)
SCRIPTS = {0: [0.50, 0.40, 0.45, 0.41, 0.30, 0.20], 1: [0.50, 0.40, 0.30, 0.20, 0.10, 0.05]}  # per rank
ROOT = Path(__file__).resolve().parents[3]


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def losses(history: list[EpochStats]) -> list[tuple[float, float]]:
    return [(s.train_loss, s.val_loss) for s in history]


def tiny_windows() -> tuple[WindowSet, WindowSet]:
    from forecaster.run.steps import split_windows  # here, not at import: the rank processes import this module

    windows = split_windows(random_ohlc(days=160, seed=3), DATA)
    return windows.train, windows.val


def _on_rank(train: WindowSet, val: WindowSet, send: distributed.Send) -> dict[str, Any]:
    """Each rank: a real fit, then a fit whose validation losses are scripted differently per rank."""
    rank = distributed.current().rank
    plain = fit(MODEL, TRAIN, train, val)
    out: dict[str, Any] = {
        "digest": digest(plain.model),
        "losses": losses(plain.history),
        "weights": {k: v.numpy() for k, v in plain.model.state_dict().items()},
        "world": distributed.current().world_size,
    }
    script, snapshots = iter(SCRIPTS[rank]), []

    def scripted(model: torch.nn.Module, *_: object) -> float:
        snapshots.append(digest(model))
        return next(script)

    real, train_module.evaluate_loss = train_module.evaluate_loss, scripted
    try:
        stopped = fit(MODEL, TRAIN.model_copy(update={"epochs": 6, "patience": 2}), train, val)
    finally:
        train_module.evaluate_loss = real
    out["early"] = {
        "val": [s.val_loss for s in stopped.history],
        "best_epoch": stopped.best_epoch,
        "stopped_early": stopped.stopped_early,
        "digest": digest(stopped.model),
        "epoch_digests": snapshots,
    }
    return out


@pytest.fixture(scope="module")
def windows() -> tuple[WindowSet, WindowSet]:
    return tiny_windows()


@pytest.fixture(scope="module")
def ranks(windows: tuple[WindowSet, WindowSet]) -> list[dict[str, Any]]:
    """Both ranks' results of `_on_rank`, run once for the module (starting processes costs seconds)."""
    return distributed.run_local(_on_rank, windows, nprocs=2)


def test_ranks_end_with_identical_weights_and_curves(ranks: list[dict[str, Any]]) -> None:
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["losses"] == ranks[1]["losses"]


def test_two_processes_take_the_same_steps_as_one_process_with_the_same_global_batch(
    ranks: list[dict[str, Any]], windows: tuple[WindowSet, WindowSet]
) -> None:
    """Same seed, so the same initial weights (DDP also copies rank 0's); the same permutation,
    so the same windows in every global batch of 32 (16 per rank), the same learning rates and
    steps. Mathematically the same updates; only the order of float additions differs (the mean
    of two 16-window means vs one 32-window mean, validation summed in two shares), which is
    float32 rounding, about 1e-7 relative per operation and ~1e-8 after these 18 steps. The
    tolerance, 1e-5, is two orders of magnitude above that on any machine and well below what a
    different batch (16 instead of 32 changes the losses by > 1e-4) or different windows give."""
    train, val = windows
    assert len(train) % 2 == 0, "an odd count would leave one window out of each 2-process epoch"
    one = fit(MODEL, TRAIN, train, val)

    np.testing.assert_allclose(np.array(ranks[0]["losses"]), np.array(losses(one.history)), rtol=1e-5, atol=0)
    for name, tensor in one.model.state_dict().items():
        np.testing.assert_allclose(ranks[0]["weights"][name], tensor.numpy(), rtol=0, atol=1e-5, err_msg=name)


def test_early_stopping_is_decided_on_rank_0_and_every_rank_keeps_the_same_best_weights(
    ranks: list[dict[str, Any]],
) -> None:
    """Rank 0's scripted validation gets worse after epoch 2 for `patience` epochs; rank 1's keeps
    improving. Both must stop after epoch 4 with rank 0's curve and epoch 2's weights."""
    for rank in ranks:
        early = rank["early"]
        assert early["val"] == SCRIPTS[0][:4]
        assert early["best_epoch"] == 2 and early["stopped_early"]
        assert early["digest"] == early["epoch_digests"][1] != early["epoch_digests"][-1]
    assert ranks[0]["early"]["digest"] == ranks[1]["early"]["digest"]


def test_fit_with_nproc_per_node_trains_in_processes_and_reports_here(
    ranks: list[dict[str, Any]], windows: tuple[WindowSet, WindowSet]
) -> None:
    """train.nproc_per_node=2 in a plain process: fit starts the two ranks itself, rank 0's
    metrics and progress reach this process's tracker and hooks, rank 0's network comes back."""
    logged: list[tuple[dict[str, float], int | None]] = []
    calls: list[tuple[str, Any]] = []

    class Tracker:
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            logged.append((metrics, step))

    hooks = FitHooks(
        on_epoch_start=lambda epoch, n: calls.append(("start", (epoch, n))),
        on_batch=lambda loss: calls.append(("batch", loss)),
        on_epoch_end=lambda stats: calls.append(("end", stats.epoch)),
    )
    result = fit(MODEL, TRAIN.model_copy(update={"nproc_per_node": 2}), *windows, tracker=Tracker(), hooks=hooks)

    assert digest(result.model) == ranks[0]["digest"]  # the same computation as the ranks above
    assert losses(result.history) == ranks[0]["losses"]
    assert [step for _, step in logged] == [1, 2, 3]
    assert [m["val_loss"] for m, _ in logged] == [s.val_loss for s in result.history]
    n_batches = next(args[1] for kind, args in calls if kind == "start")
    assert [c for c in calls if c[0] != "batch"] == [
        c for e in (1, 2, 3) for c in (("start", (e, n_batches)), ("end", e))
    ]
    assert sum(kind == "batch" for kind, _ in calls) == 3 * n_batches


def test_a_failing_rank_is_one_error_naming_the_rank_and_the_cause(windows: tuple[WindowSet, WindowSet]) -> None:
    with pytest.raises(ForecasterError, match=r"process 1 of 2 failed: ValueError: rank 1 broke"):
        distributed.run_local(_fail_on_rank_1, (), nprocs=2)


def _fail_on_rank_1(send: distributed.Send) -> None:
    if distributed.setup().rank == 1:  # joins the group from the environment run_local set
        raise ValueError("rank 1 broke")


def test_device_resident_batches_give_the_same_losses_and_weights_as_host_batches_on_cpu(
    windows: tuple[WindowSet, WindowSet],
) -> None:
    host = fit(MODEL, TRAIN.model_copy(update={"data_on": "host"}), *windows)
    resident = fit(MODEL, TRAIN.model_copy(update={"data_on": "device"}), *windows)
    assert losses(resident.history) == losses(host.history)
    assert digest(resident.model) == digest(host.model)


@pytest.mark.gpu
def test_device_resident_batches_on_cuda_train_like_host_batches(windows: tuple[WindowSet, WindowSet]) -> None:
    """The same inputs through the same kernels; only the GPU's unordered reductions (and bf16)
    can tell the two apart, far below 1%."""
    config = TRAIN.model_copy(update={"device": "cuda"})
    host = fit(MODEL, config.model_copy(update={"data_on": "host"}), *windows)
    resident = fit(MODEL, config.model_copy(update={"data_on": "device"}), *windows)
    assert resident.device.startswith("cuda")
    np.testing.assert_allclose(np.array(losses(resident.history)), np.array(losses(host.history)), rtol=1e-2)


def test_each_rank_takes_its_share_of_every_global_batch() -> None:
    config = TrainConfig(batch_size=10)
    order = np.random.default_rng(0).permutation(103)
    one = distributed.EpochPlan.of(103, config, 1)
    two = distributed.EpochPlan.of(103, config, 2)
    shards = [two.shard(order, r) for r in (0, 1)]

    assert (two.rank_batch, two.used, two.n_batches) == (5, 102, 11)  # 103 is cut to 102: 51 per rank
    for b in range(two.n_batches):
        together = np.concatenate([s[b * 5 : (b + 1) * 5] for s in shards])
        assert sorted(together) == sorted(order[:102][b * 10 : (b + 1) * 10])  # batch b of one process
    assert (one.used, one.n_batches) == (103, 11)
    np.testing.assert_array_equal(one.shard(order, 0), order)


def test_a_global_batch_smaller_than_the_processes_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size: the global batch must be at least the 4 processes, got 3"):
        distributed.EpochPlan.of(100, TrainConfig(batch_size=3), 4)


def test_torchrun_command_is_the_same_command_without_the_launcher_options() -> None:
    args = ["train", "--data", "x.csv", "--nnodes", "2", "--rdzv-endpoint=h:29500", "--epochs", "3"]
    command = distributed.torchrun_command(args, 2, 4, "h:29500")
    assert command[:2] == [sys.executable, "-m"]
    assert command[2:] == [
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=4",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=h:29500",
        "-m",
        "forecaster",
        "train",
        "--data",
        "x.csv",
        "--epochs",
        "3",
    ]
    assert "--standalone" in distributed.torchrun_command(["train"], 1, 2, None)


def test_one_process_is_a_group_of_one() -> None:
    group = distributed.setup("auto", torch.device("cpu"))
    assert (group.rank, group.world_size, group.is_main, group.is_distributed) == (0, 1, True, False)
    assert group.from_main(lambda: 41) + 1 == 42
    assert group.all_reduce_mean(torch.tensor([3.0])).item() == 3.0
    group.require_main("logging")


@pytest.mark.slow
def test_cli_under_torchrun_logs_one_run_and_registers_one_version(mlflow_store: MlflowStore) -> None:
    """`forecaster train --nproc-per-node 2 --rdzv-endpoint ...` re-launches itself under torchrun:
    both ranks train, rank 0 alone starts the MLflow run, registers and prints the result."""
    from mlflow.tracking import MlflowClient

    data = mlflow_store.root / "bars.csv"
    to_csv(random_ohlc(tickers=("AAA", "BBB"), days=120, seed=5), data)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store.uri, "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    flags = "--lookback 10 --horizon 2 --epochs 2 --hidden 8 --batch-size 64 --device cpu --seed 3"
    command = [sys.executable, "-m", "forecaster", "train", "--data", str(data), *flags.split()]
    command += ["--nproc-per-node", "2", "--rdzv-endpoint", f"127.0.0.1:{distributed.free_port()}"]
    command += ["--register-as", "ddp", "--alias", "champion"]
    done = subprocess.run(command, cwd=mlflow_store.root, env=env, capture_output=True, text=True, timeout=420)

    assert done.returncode == 0, done.stderr[-3000:]
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"run_id"')]
    assert len(printed) == 1 and printed[0]["version"] == "1"  # rank 0 alone reports
    client = MlflowClient(mlflow_store.uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert len(runs) == 1 and runs[0].info.run_id == printed[0]["run_id"]
    assert runs[0].data.params["train.nproc_per_node"] == "2"
    versions = client.search_model_versions("name='ddp'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias("ddp", "champion").version) == "1"


@pytest.mark.parametrize(
    ("nnodes", "endpoint", "message"),
    [
        (2, None, "--nnodes 2: needs --rdzv-endpoint HOST:PORT"),
        (0, None, "--nnodes: expected 1 or more machines, got 0"),
        (2, "nohostport", "--rdzv-endpoint: expected HOST:PORT (port 1..65535), got 'nohostport'"),
        (2, "host:99999", "--rdzv-endpoint: expected HOST:PORT"),
        (2, ":29500", "--rdzv-endpoint: expected HOST:PORT"),
    ],
)
def test_a_launch_that_would_wait_forever_or_cannot_meet_is_refused(
    nnodes: int, endpoint: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.torchrun_command(["train"], nnodes, 1, endpoint)
    distributed.check_launch(1, None)  # one machine: nothing to meet
    distributed.check_launch(2, "10.0.0.5:29500")
