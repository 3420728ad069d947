#!/usr/bin/env python3
"""The table of published protocols in docs/methods.md, from the CLI itself: for every method and
benchmark with a preset (`clprompt methods --json`), `clprompt config --benchmark B --method M`
gives the resolved recipe; this prints its key values and the reference files they come from.
Usage: preset_table.py build/bin/clprompt > table.md"""
import json
import subprocess
import sys


def run(cli, *args):
    return json.loads(subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout)


def transform(t):
    if t["train_crop"] == "random_resized":
        crop = f"RRC({t['size']}, scale {t['random_resized_crop']['scale_min']:g}–1, {t['train_interpolation']})"
    elif t["train_crop"] == "random":
        crop = f"Resize({t['train_resize']}²) + RandomCrop({t['size']})" if t["train_resize"] else f"RandomCrop({t['size']})"
    else:
        crop = f"Resize({t['size']}²)"
    train = crop + (" + flip" if t["horizontal_flip"] else "") + (f" + jitter {t['brightness']:.3f}" if t["brightness"] else "")
    if t["test_resize"]:
        test = f"Resize({t['test_resize']}{'²' if t['test_resize_square'] else ''}, {t['test_interpolation']}) + CenterCrop({t['size']})"
    else:
        test = f"Resize({t['size']}²)"
    norm = "none" if not t["mean"] else ("ImageNet" if t["mean"][0] == 0.485 else "/".join(f"{m:g}" for m in t["mean"]))
    return train, test, norm


def main():
    cli = sys.argv[1]
    registry = run(cli, "methods", "--json")
    print("| method | benchmark | tasks | trials (seed, class order) | epochs | batch | optimiser, lr | schedule | clip | "
          "train / test transform | norm. | eval batch | weights (timm) | sources |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in registry["methods"]:
        for b in m.get("benchmarks", []):
            c = run(cli, "config", "--method", m["name"], "--benchmark", b)
            t, tr = c["train"], c["transform"]
            trials = ", ".join(f"{x['seed']}/{x['order']}" + (f"({x['order_seed']})" if x["order"] not in ("natural",) else "")
                               for x in c["trials"])
            train, test, norm = transform(tr)
            opt = f"{t['optimizer']} {t['lr']:.6g}" + (f" (ViT ×{t['slow_lr_scale']:g})" if m["name"] == "slca" else "")
            sched = t["schedule"] + (f" {t['milestones']}" if t["schedule"] == "multistep" else "")
            sources = "; ".join(c["reference"]["sources"])
            print(f"| {m['name']} | {b} | {c['scenario']['num_tasks']} | {trials} | {t['epochs']} | {t['batch_size']} | "
                  f"{opt} | {sched} | {t['clip_grad_norm'] or '—'} | {train} / {test} | {norm} | {t['eval_batch_size']} | "
                  f"`{c['reference']['weights']}` | {sources} |")


if __name__ == "__main__":
    main()
