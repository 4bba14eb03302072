"""Data-parallel training (torch DistributedDataParallel, two CPU processes on gloo) ends with the same weights
and thresholds as one process training on the full batches, for snn2ann, joint-asnn and stbp."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pipeline.spiking.hybrid import chain_blocks
from pipeline.spiking.methods.joint_asnn import JointASNN
from pipeline.spiking.methods.snn2ann import SNN2ANN, ata_update
from pipeline.spiking.methods.stbp import STBP
from pipeline.spiking.train import SpikingConfig, fit
from pipeline.spiking.surrogate import Neuron
from pipeline.training.ann import seed_everything

METHODS = ("snn2ann", "joint-asnn", "stbp")
# batch 16 splits 8 + 8, so the average of the two processes' mean-loss gradients is the full batch's gradient;
# no batch norm, whose per-process batch statistics would differ from the full batch's
CFG = SpikingConfig(epochs=2, batch_size=16, lr=1e-2, seed=0)


def _setup(method: str):
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(256, 10))
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    blocks = chain_blocks(model, (1, 8, 8))
    net = {"snn2ann": lambda: SNN2ANN(blocks, 3, epsilon=0.0),
           "joint-asnn": lambda: JointASNN(blocks, 2, 10, neuron=Neuron("lif", v_threshold=0.3)),
           "stbp": lambda: STBP(blocks, 3, Neuron("if", v_threshold=0.3))}[method]()
    return net, (x, y, x[:8], y[:8])


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    for method in METHODS:
        net, data = _setup(method)
        fit(net, *data, CFG, progress=False)
        if rank == 0:
            torch.save(net.state_dict(), f"{out_dir}/{method}.pt")
    # Eq. 17 over the batch: all four positions ANN-inactive, noise counts 0 0 | 1 0 -> mean 0.25 <= eps 0.3,
    # although process 1 alone (mean 0.5) would raise its thresholds
    v = torch.ones(2)
    ata_update(v, torch.zeros(2), torch.tensor([[0.0, 0.0], [1.0, 0.0]])[rank], epsilon=0.3)
    torch.save(v, f"{out_dir}/ata{rank}.pt")
    dist.barrier()
    # gloo's teardown (destroy_process_group, or the interpreter's exit) sometimes aborts the process with
    # "terminate called without an active exception", even after a barrier (CI, 2026-12-02): every result is on
    # disk by now, so leave without running it
    os._exit(0)


def test_ddp_two_processes_equal_single_process_full_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for method in METHODS:
        net, data = _setup(method)
        initial = {k: v.clone() for k, v in net.state_dict().items()}
        fit(net, *data, CFG, progress=False)
        parallel = torch.load(tmp_path / f"{method}.pt")
        single = net.state_dict()
        assert single.keys() == parallel.keys()
        for key in single:
            torch.testing.assert_close(parallel[key], single[key], rtol=1e-5, atol=1e-6, msg=f"{method} {key}")
        assert any(not torch.equal(initial[k], single[k]) for k in single), method  # training moved the weights
    for rank in range(2):  # ATA decided on the mean noise of the whole batch, not of each process's half
        assert torch.load(tmp_path / f"ata{rank}.pt").tolist() == [1.0, 1.0]
