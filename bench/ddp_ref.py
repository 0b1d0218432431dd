"""PyTorch's DDP on the same models and batches as bench/ddp.cpp, for the ratio: plain vs
DistributedDataParallel at world size 1 (Gloo), and 2 processes over loopback (Gloo), time per
step. Usage: python bench/ddp_ref.py [steps]"""
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2).flatten(1)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.f1, self.f2, self.f3 = nn.Linear(784, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.f3(F.relu(self.f2(F.relu(self.f1(x.flatten(1))))))


class Runner:
    def __init__(self, cls, ddp):
        torch.manual_seed(1)
        self.net = cls()
        if ddp:
            self.net = nn.parallel.DistributedDataParallel(self.net)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        self.x, self.y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

    def step(self):
        t0 = time.perf_counter()
        self.opt.zero_grad()
        F.cross_entropy(self.net(self.x), self.y).backward()
        self.opt.step()
        return (time.perf_counter() - t0) * 1e3


def train(cls, steps, ddp):
    run = Runner(cls, ddp)
    return statistics.median([run.step() for _ in range(steps + 5)][5:])


def alternate(cls, steps):
    plain, ddp = Runner(cls, False), Runner(cls, True)
    times = [(plain.step(), ddp.step()) for _ in range(steps + 5)][5:]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, world, port, steps, out):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    res = {name: train(cls, steps, True) for name, cls in (("lenet", LeNet), ("mlp", Mlp))}
    if rank == 0:
        out.update(res)
    dist.destroy_process_group()


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    print("PyTorch", torch.__version__)
    print("| model | PyTorch plain ms/step | PyTorch DDP world 1 ms/step | overhead |")
    print("|---|---|---|---|")
    for name, cls, k in (("LeNet-5", LeNet, 3), ("MLP 784-256-256-10", Mlp, 10)):
        p, d = alternate(cls, steps * k)
        print(f"| {name} | {p:.3f} | {d:.3f} | {100 * (d / p - 1):+.1f}% |")
    dist.destroy_process_group()
    with mp.Manager() as m:
        out = m.dict()
        mp.spawn(rank_main, args=(2, free_port(), steps, out), nprocs=2)
        print("\nPyTorch DDP, 2 processes (Gloo, loopback), batch 64 per rank:\n")
        print("| model | ms/step |\n|---|---|")
        for k in ("lenet", "mlp"):
            print(f"| {k} | {out[k]:.3f} |")


if __name__ == "__main__":
    main()
