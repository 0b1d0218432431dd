"""The PyTorch side of bench/train_loop.py: a minimal Python training loop over the same MNIST
data, model, batch size, optimizer and thread count as Sculpt's run. Prints one JSON line with
time_to_first_step_s (from process start) and mean_step_s (steps 2..N)."""
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn


def process_age():
    with open("/proc/self/stat") as f:
        start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    model_name, data_dir, batch, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz")).copy()).float()
    x = ((x / 255.0 - 0.1307) / 0.3081).unsqueeze(1)
    y = torch.from_numpy(idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    if model_name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                              nn.Linear(256, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x.shape[0])
    first = None
    timed = 0.0
    cursor = 0
    for step in range(steps):
        if cursor + batch > x.shape[0]:
            order, cursor = torch.randperm(x.shape[0]), 0
        idx_b = order[cursor:cursor + batch]
        cursor += batch
        t0 = time.perf_counter()
        xb, yb = x.index_select(0, idx_b), y.index_select(0, idx_b)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.item()  # Sculpt reads the loss every step too (NaN check, logging)
        loss.backward()
        opt.step()
        if first is None:
            first = process_age()
        else:
            timed += time.perf_counter() - t0
    print(json.dumps({"time_to_first_step_s": first, "mean_step_s": timed / (steps - 1)}))


if __name__ == "__main__":
    main()
