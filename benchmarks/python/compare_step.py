#!/usr/bin/env python3
"""clprompt against the Python code it replaces: training and evaluation steps, one invocation.

Each method of gpu_step.py (the PyTorch ports of the references' steps) runs here, in this
process, and in clprompt (`bench_gpu_step --serve`, a worker process driven over a pipe), on the
same LibTorch when this Python's torch and clprompt's build share it (Debian: both 1.13), the
same threads, the same model, batch and inputs:

1. Parity first. The worker writes its parameters, inputs and one fp32 training forward/backward
   and evaluation forward (`dump`); the port loads those parameters by name and must reproduce
   the training loss, the training and evaluation logits and every gradient (max relative
   difference, reported per method; a method whose port does not match is reported as such and
   its ratio is not a like-for-like comparison).
2. Timing in short alternating bursts. Every round times one burst of each program per mode
   (train, eval), alternating which goes first; a burst is sized to --burst seconds. The worker
   times its own burst (the pipe is outside the timed region). The ratio of a round is
   python seconds / clprompt seconds for the same number of steps, i.e. clprompt's speed-up;
   the report is the median over rounds with its interquartile range. Adjacent bursts see the
   same machine, so the ratio is steady where absolute images/s move with the neighbours' load.

Modes:  train  one optimiser step as the method trains (its query pass, selection, prompted
               forward, loss, backward, clipping where the reference clips, optimiser);
        eval   the prediction (query pass included), under torch.no_grad() in Python and
               without grad in clprompt; --python-eval-autograd runs the Python side with
               autograd on, as some references evaluate.

  python3 benchmarks/python/compare_step.py --worker build/bin/bench_gpu_step
  python3 benchmarks/python/compare_step.py --worker ... --methods coda,finetune --rounds 30 --json out.json

Defaults: the embedded default's ViT (28x28 images, patch 4, D 128, depth 6, 4 heads), 100
classes in 10 tasks (the last task is simulated), train batch 64, eval batch 256, 1 thread.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_step  # noqa: E402  (the ports)

METHODS = ("finetune", "l2p", "dualprompt", "coda", "slca", "star")


# ---------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, exe, args):
        cmd = [exe, "--serve", "--device", "cpu", "--batch", str(args.batch), "--eval-batch", str(args.eval_batch),
               "--image-size", str(args.image_size), "--patch", str(args.patch), "--dim", str(args.dim),
               "--depth", str(args.depth), "--heads", str(args.heads), "--threads", str(args.threads),
               "--classes", str(args.classes)]
        cmd += args.worker_arg
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            sys.exit(f"compare_step: the worker exited (code {self.proc.wait()}) after '{line}'")
        reply = reply.strip()
        if reply.startswith("error"):
            sys.exit(f"compare_step: the worker answered '{line}' with: {reply}")
        return reply

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Parity: clprompt's parameters into the port, then loss, logits and gradients compared
# ---------------------------------------------------------------------------------------------
DTYPES = {"F64": torch.float64, "F32": torch.float32, "I64": torch.int64, "I32": torch.int32,
          "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        if end == begin:
            tensors[name] = torch.empty(entry["shape"], dtype=dtype)
        else:
            buf = bytearray(data[8 + n + begin:8 + n + end])
            tensors[name] = torch.frombuffer(buf, dtype=dtype).reshape(entry["shape"])
    return tensors


def links(name, m, T):
    """[(label, port tensor, fetch(kind))]: fetch('param') is clprompt's value for the port's
    tensor, fetch('grad') clprompt's gradient of it (zeros where clprompt has none)."""
    def get(kind, cpp_name):
        key = f"{kind}.{cpp_name}"
        if key in T:
            return T[key]
        if kind == "grad":
            return torch.zeros_like(T[f"param.{cpp_name}"])
        raise KeyError(f"clprompt's dump has no '{key}'")

    out = [(f"vit.{n}", p, lambda kind, n=n: get(kind, f"backbone.{n}")) for n, p in m.vit.named_parameters()]
    # LinearHead: one Linear per task, logits concatenated = one Linear over all classes.
    head = sorted({(mt.group(1), int(mt.group(2))) for k in T
                   for mt in [re.fullmatch(r"param\.(head\.(?:.*\.)?heads)\.(\d+)\.weight", k)] if mt},
                  key=lambda x: x[1])
    for part in ("weight", "bias"):
        out.append((f"head.{part}", getattr(m.head, part),
                    lambda kind, part=part: torch.cat([get(kind, f"{pre}.{t}.{part}") for pre, t in head])))
    if name == "l2p":
        out += [("prompt", m.prompt, lambda kind: get(kind, "selector.pool.prompts")),
                ("key", m.key, lambda kind: get(kind, "selector.pool.keys"))]
    elif name == "dualprompt":
        out += [("g_prompt", m.g_prompt, lambda kind: get(kind, "selector.g_prompt")),
                # clprompt [pool, layers, 2, L, D]; the port [layers, 2, pool, L, D]
                ("e_prompt", m.e_prompt, lambda kind: get(kind, "selector.e_pool.prompts").permute(1, 2, 0, 3, 4)),
                ("e_key", m.e_key, lambda kind: get(kind, "selector.e_pool.keys"))]
    elif name == "coda":
        for j, layer in enumerate(m.layers):
            for port, cpp in ((m.P, "components"), (m.K, "keys"), (m.A, "attention")):
                out.append((f"{cpp}[{layer}]", port[j],
                            lambda kind, layer=layer, cpp=cpp: get(kind, f"selector.layers.{layer}.{cpp}")))
    elif name == "star":
        tasks = sorted(int(mt.group(1)) for k in T for mt in [re.fullmatch(r"param\.selector\.p_(\d+)", k)] if mt)
        for j in range(len(m.layers)):
            for port, cpp in ((m.p, "p"), (m.a, "a")):
                out.append((f"{cpp}[{j}]", port[j],
                            lambda kind, j=j, cpp=cpp: torch.cat([get(kind, f"selector.{cpp}_{t}")[j] for t in tasks])))
        m.keys.copy_(torch.cat([T[f"buffer.selector.keys_{t}"] for t in tasks]))
    return out


def train_logits(name, m, images):
    if name in ("finetune", "slca"):
        return m.logits(images)
    if name == "l2p":
        return m.forward_prompted(images)[0]
    return m.forward_prompted(images, train=True) if name in ("coda", "star") \
        else m.forward_prompted(images, train=True)[0]


def rel_diff(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def parity(name, m, worker, tmp):
    """Loads clprompt's parameters into the port m; returns {what: max relative difference}."""
    path = os.path.join(tmp, f"{name}.safetensors")
    worker.ask(f"dump {path}")
    T = read_safetensors(path)
    ls = links(name, m, T)
    with torch.no_grad():
        for label, p, fetch in ls:
            value = fetch("param")
            if value.shape != p.shape:
                sys.exit(f"compare_step: {name}: clprompt's {label} has shape {list(value.shape)}, "
                         f"the port's {list(p.shape)}")
            p.copy_(value)
    images, labels = T["input.train_images"], T["input.train_labels"]
    if name == "star":
        m.clip_query = T[f"input.clip_query.{images.shape[0]}"]
    m.train()
    for p in m.parameters():
        p.grad = None
    loss = m.loss(images, labels)
    loss.backward()
    # clprompt writes the pull constraint as c * sum(1 - cos) / B, the references as -c * sum(cos) / B:
    # the same gradient, the loss offset by c * top_k.
    offset = {"l2p": m.pull * m.top_k if name == "l2p" else 0, "dualprompt": m.pull if name == "dualprompt" else 0}
    loss_offset = offset.get(name, 0)
    diffs = {"train loss": rel_diff(loss.detach().reshape(1) + loss_offset, T["output.train_loss"])}
    grads = [rel_diff(p.grad if p.grad is not None else torch.zeros_like(p), fetch("grad"))
             for _, p, fetch in ls if p.requires_grad]
    diffs["gradients (worst)"] = max(grads) if grads else 0.0
    with torch.no_grad():
        diffs["train logits"] = rel_diff(train_logits(name, m, images), T["output.train_logits"])
        m.eval()
        eval_images = T["input.eval_images"]
        if name == "star":
            m.clip_query = T[f"input.clip_query.{eval_images.shape[0]}"]
        diffs["eval logits"] = rel_diff(m.logits(eval_images), T["output.eval_logits"])
    for p in m.parameters():
        p.grad = None
    os.remove(path)
    return diffs, T


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def python_steps(name, m, T, args):
    opt = m.optimizer()
    images, labels = T["input.train_images"], T["input.train_labels"]
    eval_images = T["input.eval_images"]

    def train():
        if name == "star":
            m.clip_query = T[f"input.clip_query.{images.shape[0]}"]
        m.train()
        m.train_step(opt, images, labels)

    def evaluate():
        if name == "star":
            m.clip_query = T[f"input.clip_query.{eval_images.shape[0]}"]
        m.eval()
        if args.python_eval_autograd:
            m.logits(eval_images).argmax(1)
        else:
            with torch.no_grad():
                m.logits(eval_images).argmax(1)

    return {"train": train, "eval": evaluate}


def python_profile(name, m, T, args, mode, n):
    """n steps of `mode` with the port's phases timed: query pass, forward (selection, prompted
    forward, head, loss), backward, optimiser step (clipping included)."""
    phases = {"query": 0.0, "forward": 0.0, "backward": 0.0, "optimiser step": 0.0}
    plain_query = m.query

    def timed_query(images):
        t0 = time.perf_counter()
        q = plain_query(images)
        phases["query"] += time.perf_counter() - t0
        return q

    m.query = timed_query
    opt, trainable = m.optimizer(), m.trainable()
    images, labels = T["input.train_images"], T["input.train_labels"]
    eval_images = T["input.eval_images"]
    start = time.perf_counter()
    try:
        for _ in range(n):
            if mode == "train":
                if name == "star":
                    m.clip_query = T[f"input.clip_query.{images.shape[0]}"]
                m.train()
                opt.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                loss = m.loss(images, labels)
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                if m.clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, m.clip_grad)
                opt.step()
                t3 = time.perf_counter()
                phases["forward"] += t1 - t0
                phases["backward"] += t2 - t1
                phases["optimiser step"] += t3 - t2
            else:
                if name == "star":
                    m.clip_query = T[f"input.clip_query.{eval_images.shape[0]}"]
                m.eval()
                t0 = time.perf_counter()
                with torch.no_grad():
                    m.logits(eval_images).argmax(1)
                phases["forward"] += time.perf_counter() - t0
    finally:
        del m.query   # back to the class's method
    total = time.perf_counter() - start
    phases["forward"] -= phases["query"]   # the query pass runs inside the forward
    return {"total": total, "phases": phases}


def cpp_buckets(profile):
    """clprompt's range names in the port's four buckets (and the rest as 'other')."""
    p = profile["phases"]
    out = {"query": p.get("query", 0.0),
           "forward": sum(p.get(k, 0.0) for k in ("selection", "backbone", "head", "loss")),
           "backward": p.get("backward", 0.0), "optimiser step": p.get("optimiser step", 0.0)}
    out["other"] = profile["total"] - sum(out.values())
    return out


def python_burst(step, n):
    start = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - start


def fastest(times):
    """The 10th percentile: each program's speed when the machine is quiet."""
    return sorted(times)[len(times) // 10]


def compare(name, args, worker, tmp):
    trainable = int(worker.ask(f"build {name} fp32").split()[1])
    torch.manual_seed(0)
    vit = gpu_step.VisionTransformer(img_size=args.image_size, patch_size=args.patch, embed_dim=args.dim,
                                     depth=args.depth, num_heads=args.heads, num_classes=0)
    m = gpu_step.FACTORY[name](vit, args.classes, math_attention=args.attention == "math")
    if name == "l2p":
        m.batchwise_eval = False   # clprompt's KeyQueryPoolOptions::batchwise_eval (see docs/methods.md)
    diffs, T = parity(name, m, worker, tmp)
    ok = max(diffs.values()) <= args.tolerance
    print(f"{name}: parity {'ok' if ok else 'MISMATCH'} (max rel. diff: "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + ")", file=sys.stderr, flush=True)
    steps = python_steps(name, m, T, args)
    batch = {"train": args.batch, "eval": args.eval_batch}
    row = {"method": name, "trainable_params": trainable, "parity": diffs, "parity_ok": ok}
    for mode in args.modes:
        # Burst size: steps that take ~--burst seconds in Python (after one warm-up burst each).
        python_burst(steps[mode], 1)
        float(worker.ask(f"{mode} 1"))
        one = python_burst(steps[mode], 1)
        n = max(1, round(args.burst / max(one, 1e-6)))
        python_burst(steps[mode], n)
        float(worker.ask(f"{mode} {n}"))
        ratios, py_rates, cpp_rates, py_times, cpp_times = [], [], [], [], []
        for r in range(args.rounds):
            if r % 2 == 0:
                t_py = python_burst(steps[mode], n)
                t_cpp = float(worker.ask(f"{mode} {n}"))
            else:
                t_cpp = float(worker.ask(f"{mode} {n}"))
                t_py = python_burst(steps[mode], n)
            ratios.append(t_py / t_cpp)
            py_times.append(t_py)
            cpp_times.append(t_cpp)
            py_rates.append(batch[mode] * n / t_py)
            cpp_rates.append(batch[mode] * n / t_cpp)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        row[mode] = {"ratio": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2],
                     "python_images_per_s": statistics.median(py_rates),
                     "clprompt_images_per_s": statistics.median(cpp_rates),
                     "best_ratio": fastest(py_times) / fastest(cpp_times),
                     "steps_per_burst": n, "rounds": args.rounds, "ratios": ratios,
                     "python_seconds": py_times, "clprompt_seconds": cpp_times}
        print(f"  {mode:<5} ratio {row[mode]['ratio']:.3f} (IQR {q[0]:.3f}-{q[2]:.3f}); "
              f"python {row[mode]['python_images_per_s']:.1f} img/s, "
              f"clprompt {row[mode]['clprompt_images_per_s']:.1f} img/s, {n} steps a burst; "
              f"ratio of the fastest bursts {row[mode]['best_ratio']:.3f}",
              file=sys.stderr, flush=True)
    if args.profile_steps > 0:
        row["profile"] = {}
        for mode in args.modes:
            n = args.profile_steps
            py = python_profile(name, m, T, args, mode, n)
            py["phases"]["other"] = py["total"] - sum(py["phases"].values())
            cpp = json.loads(worker.ask(f"profile {mode} {n}"))
            row["profile"][mode] = {"python": py, "clprompt": {"total": cpp["total"], "phases": cpp_buckets(cpp),
                                                                "ranges": cpp["phases"]}}
            cells = ", ".join(f"{k} {1e3 * py['phases'][k] / n:.1f}/{1e3 * cpp_buckets(cpp)[k] / n:.1f}"
                              for k in py["phases"])
            print(f"  {mode:<5} ms per step, python/clprompt: {cells}", file=sys.stderr, flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default="build/bin/bench_gpu_step", help="clprompt's bench_gpu_step")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--modes", default="train,eval")
    ap.add_argument("--batch", type=int, default=64, help="training batch")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of both programs")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--burst", type=float, default=0.3, help="seconds of one Python burst")
    ap.add_argument("--attention", choices=["math", "sdpa"],
                    help="the port's attention (default: what clprompt uses with this LibTorch: sdpa on 2.x, math on 1.x)")
    ap.add_argument("--python-eval-autograd", action="store_true",
                    help="run the Python evaluation with autograd on (as some references do)")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="after timing, this many steps per mode with each phase timed in both programs")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="parity: max relative difference")
    ap.add_argument("--check-parity", action="store_true",
                    help="exit with status 1 when a method's port does not match clprompt (CTest)")
    ap.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for the worker (e.g. --worker-arg=--system-malloc)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r} (known: {', '.join(METHODS)})")
    if args.attention is None:
        args.attention = "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "math"
    torch.set_num_threads(args.threads)
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
           "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "cpu": platform.processor(),
           "batch": args.batch, "eval_batch": args.eval_batch, "attention": args.attention,
           "model": f"ViT image {args.image_size} patch {args.patch} D {args.dim} depth {args.depth} "
                    f"heads {args.heads}", "rounds": args.rounds, "burst_s": args.burst,
           "python_eval": "autograd on" if args.python_eval_autograd else "torch.no_grad()",
           "worker_args": args.worker_arg,
           "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
    worker = Worker(args.worker, args)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in methods:
                rows.append(compare(name, args, worker, tmp))
    finally:
        worker.close()
    print(f"torch {env['torch']}, {args.threads} thread(s), {env['model']}, train batch {args.batch}, "
          f"eval batch {args.eval_batch}; ratio = clprompt images/s / Python images/s, median of "
          f"{args.rounds} alternating rounds (IQR)")
    head = f"{'method':<11} {'parity':<9}" + "".join(f" {m + ' ratio':>22}" for m in args.modes)
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = "".join(f" {r[m]['ratio']:>8.3f} ({r[m]['ratio_q1']:.2f}-{r[m]['ratio_q3']:.2f})" for m in args.modes)
        print(f"{r['method']:<11} {'ok' if r['parity_ok'] else 'MISMATCH':<9}{cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "results": rows}, f, indent=2)
    if args.check_parity and not all(r["parity_ok"] for r in rows):
        sys.exit("compare_step: parity failed for " + ", ".join(r["method"] for r in rows if not r["parity_ok"]))


if __name__ == "__main__":
    main()
