"""The global loss in a real 2-process gloo run equals one process on the concatenated batch.

The exact relation tested (W = 2 ranks, b rows each, N = W*b):
- each rank's loss is the mean over its own b rows; the mean of the W rank losses equals the
  single-process loss on all N rows;
- gradient w.r.t. a rank's own embedding rows (through the all-gather with gradients) is W times the
  single-process gradient of those rows, because every rank's loss reaches every row;
- gradient w.r.t. the parameters of a layer wrapped in DistributedDataParallel (which averages over
  ranks) equals the single-process parameter gradient.
"""
from __future__ import annotations

import math
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from melp.losses import gather_with_grad, global_contrastive_loss

WORLD, PER_RANK, IN_DIM, EMB_DIM = 2, 3, 5, 4
LOG_SCALE = math.log(1 / 0.07)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * PER_RANK, IN_DIM, generator=g), torch.randn(WORLD * PER_RANK, IN_DIM, generator=g)


def _layers():
    torch.manual_seed(1)
    return torch.nn.Linear(IN_DIM, EMB_DIM), torch.nn.Linear(IN_DIM, EMB_DIM)


def _loss(ecg_layer, text_layer, x_ecg, x_text):
    ecg = F.normalize(ecg_layer(x_ecg), dim=-1)
    text = F.normalize(text_layer(x_text), dim=-1)
    ecg.retain_grad()
    return global_contrastive_loss(ecg, text, torch.tensor(LOG_SCALE)), ecg


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        x_ecg, x_text = _inputs()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        ecg_layer, text_layer = _layers()
        ecg_ddp = torch.nn.parallel.DistributedDataParallel(ecg_layer)
        text_ddp = torch.nn.parallel.DistributedDataParallel(text_layer)
        loss, ecg = _loss(ecg_ddp, text_ddp, x_ecg[rows], x_text[rows])
        loss.backward()
        gathered = gather_with_grad(ecg.detach())
        save_file({"loss": loss.detach().reshape(1), "ecg_grad": ecg.grad.contiguous(),
                   "weight_grad": ecg_layer.weight.grad.contiguous(),
                   "text_weight_grad": text_layer.weight.grad.contiguous(),
                   "gathered": gathered.contiguous()}, f"{out_dir}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_two_process_global_loss_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(WORLD)]

    x_ecg, x_text = _inputs()
    ecg_layer, text_layer = _layers()
    loss, ecg = _loss(ecg_layer, text_layer, x_ecg, x_text)
    loss.backward()

    # the gather puts rank r's rows at r*b .. (r+1)*b on every rank
    for r in ranks:
        assert torch.allclose(r["gathered"], ecg.detach(), atol=1e-6)
    mean_rank_loss = sum(r["loss"] for r in ranks) / WORLD
    assert torch.allclose(mean_rank_loss, loss.detach().reshape(1), atol=1e-6)
    for rank, r in enumerate(ranks):
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        assert torch.allclose(r["ecg_grad"], WORLD * ecg.grad[rows], atol=1e-6)
        assert torch.allclose(r["weight_grad"], ecg_layer.weight.grad, atol=1e-6)
        assert torch.allclose(r["text_weight_grad"], text_layer.weight.grad, atol=1e-6)
