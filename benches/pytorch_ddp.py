"""PyTorch DDP twin of runtime/examples/ddp_throughput.rs, run under torchrun: gloo process
group, one intra-op and one inter-op thread per process, the same models, data (same seed on
every rank), batch (128 per rank) and Adam, DistributedSampler shards and DistributedDataParallel.
After a warm-up epoch, each timed epoch starts and ends at a barrier; rank 0 prints one JSON line
per epoch with the global samples/s (the samples of all ranks over the epoch's wall time).

  torchrun --standalone --nproc-per-node N benches/pytorch_ddp.py <mlp|cnn> <epochs> [samples]
"""

import json
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset
from torch.utils.data.distributed import DistributedSampler

BATCH = 128
DEFAULT_SAMPLES = {"mlp": 128 * 1000, "cnn": 128 * 100}


def net(model_name):
    if model_name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
    )


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in DEFAULT_SAMPLES:
        sys.exit("usage: pytorch_ddp.py <mlp|cnn> <epochs> [samples]")
    model_name, epochs = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_SAMPLES[model_name]
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(0)
    if model_name == "mlp":
        xs = torch.randn(n, 784)
    else:
        xs = torch.randn(n, 1, 28, 28)
    ys = torch.randint(0, 10, (n,))
    model = DistributedDataParallel(net(model_name))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    sampler = DistributedSampler(TensorDataset(xs, ys), num_replicas=world, rank=rank, shuffle=True, seed=0)
    # Epoch 0 is the warm-up.
    for epoch in range(epochs + 1):
        sampler.set_epoch(epoch)
        dist.barrier()
        started = time.perf_counter()
        order = torch.tensor(list(sampler))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            x, y = xs[idx], ys[idx]
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        dist.barrier()
        seconds = time.perf_counter() - started
        seen = sampler.num_samples * world  # every rank's samples, the padding included
        if epoch > 0 and rank == 0:
            print(json.dumps({
                "impl": "pytorch", "model": model_name, "world_size": world, "samples": seen,
                "seconds": round(seconds, 4), "samples_per_second": round(seen / seconds, 1),
            }), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
