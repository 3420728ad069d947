#!/usr/bin/python3
"""Prompt selection + assembly in plain PyTorch, timed like benchmarks/prompt_selection.cpp.

The three selections at evaluation after task 4 of 10, default options, B x D grid:
  l2p   cosine to 10 keys, top-5, gather 5 prompts of 5 tokens -> input tokens [B, 25, D]
  dual  cosine to 10 E-keys, top-1, that E-prompt's key/value [B, 5, D] at layers 2-4; the
        G-prompt of layers 0-1 broadcast to the batch (expand, no copy)
  coda  per layer 0-4: 50 active components, weights [B, 50] from q * A (materialised as
        [B, 50, D], the straightforward einsum form) and the weighted sum of the [50, 8, D]
        components, split into key/value halves
  coda_mm  the same CODA weights computed as two [B, D] x [D, 50] products (the C++ algorithm)
  star  STAR-Prompt's second level, all 12 layers: 50 seen classes, CLIP query/keys of width 512,
        w = 5 cos(q * softmax(a_c), key_c) with q * softmax(a) materialised as [B, 50, 512] (the
        reference's compute_maps), arg-max, residual w * p [B, D]
  star_mm  the same w from two [B, 512] x [512, 50] products (the C++ algorithm)

Written for this comparison, under torch.no_grad(), float32 on the CPU, with the thread count of
$OMP_NUM_THREADS (default 2). Prints one JSON object per line:
  {"selector": ..., "B": ..., "D": ..., "us": mean microseconds per call, "iterations": ...}
Run: /usr/bin/python3 benchmarks/python/prompt_selection.py [--min-time 0.2]
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

TASK, TASKS = 4, 10


def unit(x, dim=-1):
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1e-12)


class L2P:
    def __init__(self, d, pool=10, length=5, top_k=5):
        self.keys = torch.empty(pool, d).uniform_(-1, 1)
        self.prompts = torch.empty(pool, length, d).uniform_(-1, 1)
        self.top_k = top_k

    def __call__(self, q):
        sim = unit(q) @ unit(self.keys).t()                    # [B, M]
        idx = sim.topk(self.top_k, dim=1).indices              # [B, k]
        return self.prompts[idx].flatten(1, 2)                 # [B, k * L, D]


class Dual:
    def __init__(self, d, pool=10, e_length=5, g_length=5, e_layers=(2, 3, 4), g_layers=(0, 1)):
        self.keys = torch.empty(pool, d).uniform_(-1, 1)
        self.e = torch.empty(pool, len(e_layers), 2, e_length, d).uniform_(-1, 1)   # key/value prompts
        self.g = torch.empty(len(g_layers), 2, g_length, d).uniform_(-1, 1)
        self.e_layers, self.g_layers = e_layers, g_layers

    def __call__(self, q):
        sim = unit(q) @ unit(self.keys).t()
        idx = sim.argmax(dim=1)                                 # top-1
        e = self.e[idx]                                         # [B, layers, 2, L, D]
        out = {}
        for j, layer in enumerate(self.e_layers):
            out[layer] = (e[:, j, 0], e[:, j, 1])
        b = q.shape[0]
        for j, layer in enumerate(self.g_layers):
            g = self.g[j].unsqueeze(0).expand(b, -1, -1, -1)
            out[layer] = (g[:, 0], g[:, 1])
        return out


class Coda:
    def __init__(self, d, pool=100, length=8, layers=5, mm=False):
        f = (TASK + 1) * pool // TASKS
        self.P = [torch.rand(pool, length, d) for _ in range(layers)]
        self.K = [torch.rand(pool, d) for _ in range(layers)]
        self.A = [torch.rand(pool, d) for _ in range(layers)]
        self.f, self.half, self.mm = f, length // 2, mm

    def __call__(self, q):
        out = []
        for P, K, A in zip(self.P, self.K, self.A):
            P, K, A = P[: self.f], K[: self.f], A[: self.f]
            if self.mm:
                k = unit(K)
                alpha = (q @ (A * k).t()) / ((q * q) @ (A * A).t()).clamp_min(1e-24).sqrt()
            else:
                aq = torch.einsum("bd,kd->bkd", q, A)
                alpha = torch.einsum("bkd,kd->bk", F.normalize(aq, dim=2), F.normalize(K, dim=1))
            p = torch.einsum("bk,kld->bld", alpha, P)
            out.append((p[:, : self.half], p[:, self.half:]))
        return out


class Star:
    query_dim = 512

    def __init__(self, d, classes=(TASK + 1) * 10, layers=12, mm=False):
        self.P = [torch.randn(classes, d) for _ in range(layers)]
        self.A = [torch.randn(classes, self.query_dim) for _ in range(layers)]
        self.keys = unit(torch.randn(classes, self.query_dim))
        self.mm = mm

    def __call__(self, q):
        out = []
        for P, A in zip(self.P, self.A):
            s = A.softmax(dim=1)
            if self.mm:
                w = 5 * (q @ (s * self.keys).t()) / ((q * q) @ (s * s).t()).clamp_min(1e-24).sqrt()
            else:
                w = 5 * torch.einsum("bck,ck->bc", F.normalize(torch.einsum("bk,ck->bck", q, s), dim=2), self.keys)
            value, index = w.max(dim=1)
            out.append(value[:, None] * P[index])
        return out


def time_call(fn, q, min_time):
    fn(q)  # warm-up
    iterations, start = 0, time.perf_counter()
    while True:
        fn(q)
        iterations += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and iterations >= 3:
            return elapsed / iterations * 1e6, iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per measurement")
    parser.add_argument("--batches", default="1,8,32,128,256")
    parser.add_argument("--dims", default="192,768")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    builders = {"l2p": L2P, "dual": Dual, "coda": Coda, "coda_mm": lambda d: Coda(d, mm=True),
                "star": Star, "star_mm": lambda d: Star(d, mm=True)}
    with torch.no_grad():
        for name, build in builders.items():
            for d in map(int, args.dims.split(",")):
                selector = build(d)
                for b in map(int, args.batches.split(",")):
                    q = torch.randn(b, getattr(selector, "query_dim", d))
                    us, n = time_call(selector, q, args.min_time)
                    print(json.dumps({"selector": name, "B": b, "D": d, "us": us, "iterations": n,
                                      "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
