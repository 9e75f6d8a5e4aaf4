"""The cross-process BatchNorm (``--trainer.sync_batchnorm`` on CPU processes): two processes holding half
a batch each normalise, back-propagate and update their running statistics exactly as one BatchNorm
over the whole batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from zoo.layers.sync_batchnorm import CrossProcessBatchNorm, convert, revert


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        x, w = torch.randn(8, 3, 5, 5, dtype=torch.float64), torch.randn(8, 3, 5, 5, dtype=torch.float64)
        whole = nn.BatchNorm2d(3).double()
        xw = x.clone().requires_grad_()
        reference = whole(xw)  # train mode: batch statistics, one running-statistics update
        (reference * w).sum().backward()
        part = CrossProcessBatchNorm(3).double()
        xp = x[rank::2].clone().requires_grad_()
        out = part(xp)
        (out * w[rank::2]).sum().backward()  # this process's share of the same loss
        grads = torch.stack([part.weight.grad, part.bias.grad])
        dist.all_reduce(grads)  # what DDP sums (before its averaging)
        results[rank] = {
            "out": (out - reference[rank::2]).abs().max().item(),
            "x_grad": (xp.grad - xw.grad[rank::2]).abs().max().item(),
            "param_grads": (grads - torch.stack([whole.weight.grad, whole.bias.grad])).abs().max().item(),
            "running": max(
                (part.running_mean - whole.running_mean).abs().max().item(),
                (part.running_var - whole.running_var).abs().max().item(),
            ),
        }
    finally:
        dist.destroy_process_group()


def test_two_processes_with_half_a_batch_each_equal_one_batchnorm_over_the_whole() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(port, results), nprocs=2)
    for rank in (0, 1):
        assert all(value < 1e-10 for value in results[rank].values()), results[rank]


def test_in_one_process_it_is_the_batchnorm_it_replaced_and_converts_both_ways() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.BatchNorm1d(4 * 26 * 26))
    x = torch.rand(6, 1, 28, 28)
    expected = net(x)
    converted = convert(net)
    assert [type(m) for m in converted.modules()].count(CrossProcessBatchNorm) == 2
    assert torch.allclose(converted(x), expected, atol=1e-6)  # no process group: plain BatchNorm
    back = revert(converted)
    assert [type(m) for m in back][1] is nn.BatchNorm2d and [type(m) for m in back][4] is nn.BatchNorm1d
    assert int(back[1].num_batches_tracked) == 2  # the statistics it gathered while converted are kept
