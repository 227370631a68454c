"""PyTorch eager twin of runtime/examples/fit_throughput.rs (same models, batch, optimizer,
threads). Prints one JSON line per measured epoch."""

import json
import sys
import time

import torch
from torch import nn

BATCH = 128


def main():
    model_name, epochs = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if model_name == "mlp":
        n = 128 * 200
        xs = torch.randn(n, 784)
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    else:
        n = 128 * 40
        xs = torch.randn(n, 1, 28, 28)
        net = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
        )
    ys = torch.randint(0, 10, (n,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        perm = torch.randperm(n)
        for start in range(0, n, BATCH):
            idx = perm[start : start + BATCH]
            x, y = xs[idx], ys[idx]
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
        if epoch > 0:
            rate = n / (time.perf_counter() - started)
            print(json.dumps({"impl": "pytorch", "model": model_name, "samples_per_second": round(rate, 1)}))


if __name__ == "__main__":
    main()
