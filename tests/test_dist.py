"""DDP under torchrun (gloo, CPU): the distributed loss, gradients and method state after one step
equal one process's on the global batch, with two processes on one node and with two single-process
"nodes" on localhost that meet through torchrun's c10d rendezvous, as the machines of a cluster do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_params
from selfsup.methods import DataInfo, Views, build_method
from selfsup.params import load_config
from servers import free_port

pytestmark = pytest.mark.slow  # each test starts torchrun with two processes

WORKERS = Path(__file__).parent / "workers"
NO_BN = {"backbone": {"name": "small_cnn", "width": 4, "norm": "none"},
         "projector": {"layers": 2, "hidden_dim": 16, "out_dim": 8, "hidden_bn": False}}


def torchrun(script: Path, *args: str, nodes: int = 1) -> None:
    """Run ``script`` on two processes: one node with two (``--standalone``), or ``nodes=2`` "machines" on
    localhost with one process each, meeting through the c10d rendezvous as nodes of a cluster do."""
    launcher = (shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run").split()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nodes == 1:
        cmds = [[*launcher, "--nproc_per_node=2", "--standalone", str(script), *args]]
    else:
        endpoint = f"127.0.0.1:{free_port()}"
        cmds = [[*launcher, f"--nnodes={nodes}", "--nproc_per_node=1", f"--node_rank={rank}",
                 "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", "--rdzv_id=selfsup-test", str(script), *args]
                for rank in range(nodes)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for cmd in cmds]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]


def run_two_processes(project: Path, params: Path, views: Views, index: torch.Tensor, n_images: int,
                      nodes: int = 1) -> dict:
    torch.save({"large": views.large, "small": views.small, "index": index, "n_images": n_images},
               project / "views.pt")
    torchrun(WORKERS / "ddp_step.py", str(params), str(project / "ddp.pt"), nodes=nodes)
    out = torch.load(project / "ddp.pt", weights_only=True)
    other = torch.load(project / "ddp.rank1.pt", weights_only=True)
    assert out["world"] == 2 and out["broadcast_buffers"] is False
    # every buffer a method keeps (memory banks, queues, centres, counters) is the same on both ranks without
    # DDP's broadcast; BatchNorm statistics too where BatchNorm is global
    for name, value in out["state"].items():
        if _per_rank_bn_statistic(name, out["state"], params):
            continue
        assert torch.equal(other["state"][name], value), name
    return out


def _per_rank_bn_statistic(name: str, state: dict, params: Path) -> bool:
    """Whether ``name`` is a BatchNorm running statistic that each rank keeps on its own (no global BN)."""
    is_bn_stat = name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    return is_bn_stat and not load_config(params).train.sync_bn


def single_process_step(params: Path, views: Views, index: torch.Tensor, n_images: int) -> dict:
    torch.manual_seed(0)
    method = build_method(load_config(params), DataInfo(n_images=n_images))
    loss = method(views, index).losses["loss"]
    loss.backward()
    grads = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
    torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1).step()
    method.on_step_end(0, 10)
    return {"loss": loss.detach(), "grads": grads, "state": method.state_dict()}


def assert_same_step(ddp: dict, single: dict) -> None:
    assert torch.allclose(ddp["loss"], single["loss"], rtol=1e-5, atol=1e-6)
    assert ddp["grads"].keys() == single["grads"].keys()
    for name, g in single["grads"].items():
        # float32 sums taken in another order (two ranks, all-reduced BatchNorm statistics) differ by about
        # 1e-6 of the tensor's scale; Barlow Twins' gradients reach tens
        assert torch.allclose(ddp["grads"][name], g, rtol=1e-4, atol=1e-5 * max(1.0, float(g.abs().max()))), name
    for name, value in single["state"].items():
        assert torch.allclose(ddp["state"][name].float(), value.float(), rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize(("method", "nodes"), [("simclr", 1), ("barlow", 1), ("instdisc", 1), ("simclr", 2)])
def test_two_process_step_equals_single_process(project, method, nodes) -> None:
    # No BatchNorm anywhere, so each rank's forward sees exactly what one process sees. InstDisc's
    # memory bank rows of both ranks' images are written on every rank. nodes=2: two torchrun launches
    # on localhost, one per "machine", joined by the c10d rendezvous.
    params = write_params(project, method=method, **NO_BN, nce_k=16)
    g = torch.Generator().manual_seed(0)
    views = Views([torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)])  # 2 x B samples, B = 4 per rank
    index = torch.arange(8)
    assert_same_step(run_two_processes(project, params, views, index, 8, nodes=nodes),
                     single_process_step(params, views, index, 8))


@pytest.mark.parametrize("method", ["simclr", "barlow"])
def test_two_process_step_with_global_batch_norm_equals_single_process(project, method) -> None:
    """With train.sync_bn (these methods' paper default) BatchNorm sees the global batch on CPU too: the
    loss, every gradient and the running statistics equal one process's on the whole batch."""
    params = write_params(project, method=method, backbone={"name": "small_cnn", "width": 4, "norm": "bn"},
                          projector={"layers": 2, "hidden_dim": 16, "out_dim": 8, "hidden_bn": True},
                          train={"sync_bn": True})
    g = torch.Generator().manual_seed(3)
    views = Views([torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)])
    index = torch.arange(8)
    assert_same_step(run_two_processes(project, params, views, index, 8),
                     single_process_step(params, views, index, 8))


def test_moco_shuffle_bn_over_two_processes_equals_split_batch_bn_in_one(project) -> None:
    """Keys shuffled across ranks (per-rank BN) == one process encoding the same shuffled halves
    separately; negatives (the queue) are the keys of both ranks, so the queues match too."""
    params = write_params(project, method="moco", backbone={"name": "small_cnn", "width": 4, "norm": "bn"},
                          projector={"layers": 2, "hidden_dim": 16, "out_dim": 8, "hidden_bn": True},
                          batch_size=8, queue_size=32, shuffle_bn_splits=2)
    g = torch.Generator().manual_seed(1)
    views = Views([torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)])
    index = torch.arange(8)
    ddp = run_two_processes(project, params, views, index, 64)
    single = single_process_step(params, views, index, 64)
    assert_same_step(ddp, single)
    assert int(single["state"]["queue_ptr"]) == 8          # the global batch was enqueued once


def test_swav_sinkhorn_over_two_processes_equals_one_process(project) -> None:
    """Sinkhorn's marginals are all-reduced, so codes over two halves equal codes over the batch."""
    params = write_params(project, method="swav", **NO_BN, n_prototypes=6, queue_length=16, queue_start_epoch=0,
                          views={"size": 16, "multi_crop": {"n_small": 2, "size": 8}})
    g = torch.Generator().manual_seed(2)
    views = Views([torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)],
                  [torch.randn(8, 3, 8, 8, generator=g) for _ in range(2)])
    index = torch.arange(8)
    assert_same_step(run_two_processes(project, params, views, index, 64),
                     single_process_step(params, views, index, 64))


@pytest.mark.parametrize("nodes", [1, 2])
def test_elo_two_process_step_equals_single_process(tmp_path, nodes) -> None:
    """ELo's first step under DDP (rows of the global batch per rank, the global batch's augmentation and
    task labels, contrastive candidates from both ranks) equals one process's step on the global batch:
    the same loss terms and the same gradients for every network, head and distillation projection."""
    from selfsup.config import Config
    from selfsup.elo.train import EloTraining
    from selfsup.loop import Optimisation
    from selfsup.schema import build

    sys.path.insert(0, str(Path(__file__).parent / "elo"))
    from test_elo_train import TINY, _clips

    frames, flow, logmel = _clips(n=16)
    config = {"elo": {**TINY, "batch_size": 8, "crop_min": 0.6, "brightness": 0.2}, "train": {"threads": 1}}
    torch.save({"config": config, "frames": frames, "flow": flow, "logmel": logmel}, tmp_path / "elo.pt")
    torchrun(WORKERS / "elo_ddp_step.py", str(tmp_path / "elo.pt"), str(tmp_path / "ddp.pt"), nodes=nodes)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["world"] == 2

    task = EloTraining(build(Config, config), frames, flow, logmel)
    losses = task.train_step(0, Optimisation(task.device, amp=False)).losses
    grads = {k: p.grad for k, p in task.model.named_parameters() if p.grad is not None}
    assert {"rgb/contrastive", "rgb/order", "rgb/reverse", "audio/align", "flow/distill"} <= set(losses)
    assert ddp["losses"].keys() == losses.keys()
    for k, v in losses.items():
        assert torch.allclose(ddp["losses"][k], v, rtol=1e-5, atol=1e-6), k
    assert ddp["grads"].keys() == grads.keys() and len(grads) > 50
    for k, g in grads.items():
        assert torch.allclose(ddp["grads"][k], g, rtol=1e-4, atol=1e-6), k


def _worker_of_rank(agent: subprocess.Popen, rank: int) -> int | None:
    """The pid of the torchrun worker with ``RANK=rank`` among the agent's descendants, if it runs yet."""
    import psutil

    for child in psutil.Process(agent.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "pretrain.py" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def test_a_killed_torchrun_worker_stops_the_job_and_a_rerun_resumes_to_identical_metrics(project) -> None:
    """Rank 1 is SIGKILLed after the first checkpoint: the job stops (torchrun takes the whole group down),
    and the same command again resumes from that checkpoint to the metrics of an uninterrupted run."""
    import json
    import signal
    import time

    from conftest import REPO, TINY_RUN, tiny_dataset

    tiny_dataset(project / "data", n_train=64)
    write_params(project, method="simclr", **{**TINY_RUN, **NO_BN, "epochs": 4, "batch_size": 16,
                                              "train": {**TINY_RUN["train"], "checkpoint_every": 2}})
    launcher = (shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run").split()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(name: str) -> list[str]:
        return [*launcher, "--nproc_per_node=2", "--standalone", str(REPO / "stages" / "pretrain.py"), "--params",
                "params.yaml", "--data", "data", "--out", name, "--checkpoints", f"ck-{name}", "--no-mlflow"]

    subprocess.run(cmd("whole"), cwd=project, env=env, check=True, capture_output=True, timeout=300)
    agent = subprocess.Popen(cmd("killed"), cwd=project, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (project / "ck-killed" / "last.pt").exists() and time.time() < deadline and agent.poll() is None:
        time.sleep(0.05)
    victim = _worker_of_rank(agent, 1)
    assert victim is not None and agent.poll() is None, "the job ended before its first checkpoint"
    os.kill(victim, signal.SIGKILL)
    assert agent.wait(timeout=120) != 0  # the job stops
    assert not (project / "killed" / "metrics.json").exists()
    subprocess.run(cmd("killed"), cwd=project, env=env, check=True, capture_output=True, timeout=300)

    def metrics(name: str) -> dict:
        values = json.loads((project / name / "metrics.json").read_text())
        return {k: v for k, v in values.items() if "seconds" not in k and k != "peak_rss_mib"}

    assert metrics("killed") == metrics("whole")
