"""PyTorch eager twin of runtime/examples/time_to_accuracy.rs: the same tasks (the tensors its
`export` wrote: same split, same tokens), architectures, batch size, optimizer, learning-rate
schedule, augmentation and thread count. One JSON line per epoch: seconds since training
started (held-out evaluation included, as `fit`'s validation is) and held-out accuracy.

  python pytorch_apps.py <image|text> <epochs> <seed> <export dir>
"""

import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def load(directory):
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    tensors = {}
    for name in ("train_x", "train_y", "test_x", "test_y"):
        with open(os.path.join(directory, name + ".bin"), "rb") as f:
            raw = bytearray(f.read())
        tensors[name] = torch.frombuffer(raw, dtype=dtypes[meta[name]["dtype"]]).reshape(meta[name]["shape"])
    return meta, tensors


def image_net():
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), *block(16, 16), nn.MaxPool2d(2),
        *block(16, 32), *block(32, 32), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


class TextNet(nn.Module):
    """Embedding → bidirectional LSTM → max over time → dropout → dense."""

    def __init__(self, vocab, classes=8):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 32)
        self.lstm = nn.LSTM(32, 64, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.2)
        self.dense = nn.Linear(128, classes)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.dense(self.dropout(out.amax(1)))


def augment(x):
    """RandomCrop(padding 2) then RandomRotation(10°), per image, as the notebook's transforms."""
    n, _, h, w = x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = torch.randint(0, 5, (n, 2))
    x = torch.stack([padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets.tolist())])
    angles = (torch.rand(n) * 2 - 1) * math.radians(10.0)
    cos, sin, zeros = angles.cos(), angles.sin(), torch.zeros(n)
    theta = torch.stack([cos, -sin, zeros, sin, cos, zeros], 1).reshape(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def main():
    task, epochs, seed, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(2)
    meta, t = load(directory)
    torch.manual_seed(seed)
    if task == "image":
        net, lr = image_net(), 2e-3
    else:
        net, lr = TextNet(meta["vocab"]), 3e-3
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=meta["gamma"])
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = t["train_x"], t["train_y"]
    n, batch = xs.shape[0], meta["batch_size"]
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        perm = torch.randperm(n)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            x, y = xs[idx], ys[idx]
            if task == "image":
                x = augment(x)
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
        schedule.step()
        net.eval()
        with torch.no_grad():
            correct = sum(
                (net(t["test_x"][i : i + 500]).argmax(1) == t["test_y"][i : i + 500]).sum().item()
                for i in range(0, t["test_x"].shape[0], 500)
            )
        accuracy = correct / t["test_x"].shape[0]
        seconds = time.perf_counter() - started
        print(json.dumps({"impl": "pytorch", "task": task, "epoch": epoch, "seconds": round(seconds, 3), "accuracy": round(accuracy, 4)}), flush=True)


if __name__ == "__main__":
    main()
