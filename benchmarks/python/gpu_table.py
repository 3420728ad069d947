#!/usr/bin/env python3
"""Side-by-side table of the C++ (bench_gpu_step) and PyTorch-eager (gpu_step.py) step benchmarks:
training and evaluation images/s and peak memory per method and precision, and the ratio C++ /
PyTorch. Usage: gpu_table.py CPP.json PYTHON.json [--title TEXT] > table.md"""
import argparse
import json

NAMES = {"coda": "coda-prompt", "star": "star-prompt level 2"}


def index(path):
    with open(path) as f:
        data = json.load(f)
    return data.get("env", {}), {(r["method"], r["precision"]): r for r in data["results"]}


def num(x, digits=0):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return "n/a" if not a or not b else f"{a / b:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cpp")
    ap.add_argument("python")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    cpp_env, cpp = index(a.cpp)
    py_env, py = index(a.python)
    if a.title:
        print(a.title + "\n")
    print(f"C++: {cpp_env}  \nPyTorch: { {k: py_env.get(k) for k in ('torch', 'timm', 'device', 'attention', 'batch', 'image_size')} }\n")
    print("| method | precision | train img/s C++ | train img/s PyTorch | ratio | peak MiB C++ | peak MiB PyTorch "
          "| eval img/s C++ | eval img/s PyTorch | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in cpp:
        c, p = cpp[key], py.get(key, {})
        method, precision = key
        print(f"| {NAMES.get(method, method)} | {precision} | {num(c['train_images_per_s'])} | "
              f"{num(p.get('train_images_per_s'))} | {ratio(c['train_images_per_s'], p.get('train_images_per_s'))} | "
              f"{num(c.get('train_peak_mib'))} | {num(p.get('train_peak_mib'))} | {num(c['eval_images_per_s'])} | "
              f"{num(p.get('eval_images_per_s'))} | {ratio(c['eval_images_per_s'], p.get('eval_images_per_s'))} |")


if __name__ == "__main__":
    main()
