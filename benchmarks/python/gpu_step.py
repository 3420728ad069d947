#!/usr/bin/env python3
"""PyTorch-eager training and evaluation throughput of the continual-learning methods on a ViT.

For each method, precision (fp32, or bf16 under torch.autocast) and phase it reports
  train images/s   forward + backward + optimizer step, as the method trains (frozen backbone
                   where the method freezes it, the method's query pass included),
  eval images/s    torch.no_grad() forward, the method's query pass included,
  peak memory      torch.cuda.max_memory_allocated() of that phase (model, optimizer state,
                   activations; CUDA only),
as the median over --windows timed windows of --iters iterations each, after --warmup iterations,
with torch.cuda.synchronize() around every window. Input: one fixed random batch already on the
device (no data loading, no augmentation), random labels over --classes classes.

The backbone is timm's VisionTransformer (`vit_base_patch16_224`, random weights, pretrained=False,
or the --depth/--dim/--heads/--patch/--image-size overrides). Its blocks are run by
`vit_features` below, a re-statement of timm's Block/Attention forward with the three prompt
injections the methods need:
  prompt tokens  extra input tokens                              (L2P, prompt tuning)
  prefix         extra keys/values concatenated to K and V      (DualPrompt, CODA-Prompt)
  value residual a [B, D] vector added to every token's value    (STAR-Prompt level 2)
Everything is simulated at the last task of a 10-task, 100-class split (the largest active
prompt sets: CODA-Prompt with 90 frozen + 10 trained components, STAR-Prompt with 90 frozen +
10 trained classes).

Methods (each as its reference code computes it; optimizers as the references use them):
  finetune   whole ViT + linear head, Adam.
  l2p        JH-LEE-KR/l2p-pytorch: frozen ViT; query = no-grad pass of the frozen ViT ([CLS] after
             the final norm); pool of 10 prompts x 5 tokens with keys; top-5 by cosine, then the
             reference's batch-wise majority vote (batchwise_prompt=True, torch.unique); the 25
             prompt tokens go after [CLS] and get the [CLS] position embedding; head on the mean of
             the prompt-token outputs; loss CE (train class mask) - 0.1 * reduce_sim (the pull
             constraint, = 0.1 * sum(1 - cos) up to a constant); Adam, grad-norm clip 1.0.
  dualprompt JH-LEE-KR/dualprompt-pytorch: frozen ViT; query pass; G-prompt (length 5, layers 0-1)
             and E-prompt pool (10 x length 5, layers 2-4) by prefix tuning: separate key and value
             prefixes [B, 5, D] concatenated to that layer's K and V; top-1 + batch-wise vote at
             evaluation, the task's own E-prompt at training (use_prompt_mask=True); head on
             [CLS]; loss CE (class mask) - 1.0 * reduce_sim; Adam, grad-norm clip 1.0.
             (The reference reshapes the selected [L, 2, B, ...] prompt to [L, B, 2, ...] instead of
             permuting it; here key and value are separated as the paper describes. Same cost.)
  coda       GT-RIPL/CODA-Prompt models/zoo.py: frozen ViT; query pass; per layer 0-4 components
             P [100, 8, D], keys K [100, D], attention A [100, D]; alpha = cos(q * A, K) (q * A
             materialised as [B, 100, D] by the reference's einsum); prompt = sum alpha P
             [B, 8, D], split into a 4-token key prefix and a 4-token value prefix; past-task
             components detached at training; head on [CLS]; ortho_mu = 0 (the reference
             configuration); Adam.
  slca       whole ViT slow-trained + linear head: SGD momentum 0.9, weight decay 5e-4,
             backbone lr 1e-4, head lr 1e-2 (the classifier-alignment stage is not timed).
  star       STAR-Prompt level 2, aimagelab/mammoth models/star_prompt_utils/second_stage_model.py:
             frozen ViT; query = CLIP image embedding -- HERE A RANDOM [B, 512] TENSOR STANDS IN
             FOR CLIP'S OUTPUT, CLIP IS NOT RUN (its cost is not included); per layer (all 12) and
             class (100) residual prompt p [100, D] and modulation a [100, 512]; random normalised
             keys [100, 512]; w_c = 5 cos(q * softmax(a_c), key_c); per sample the arg-max class
             keeps its weight, the others are zeroed (in place under no_grad, as the reference);
             s_l = w p [B, D] added to every token's attention value (v <- v + s_l per head); head
             on [CLS]; loss CE + 10 * orthogonality loss of the current classes' prompts
             (lambda_ortho_second_stage=10); Adam.

Attention runs through F.scaled_dot_product_attention (timm's default fused path); --attention
math uses the explicit softmax(q k^T / sqrt(d)) v the 2022 reference ViTs use (more memory).

Examples:
  python gpu_step.py --device cuda --json gpu_step.json
  python gpu_step.py --cpu-smoke                 (tiny: D 128, depth 5, on the CPU)

Peak memory per phase counts everything alive then: the evaluation peak includes the weights and
the optimizer state left from the training phase of the same method and precision.
"""
import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import timm
    from timm.models.vision_transformer import VisionTransformer
except ImportError:  # without timm (Debian's python3-torch): its modules restated, same names
    timm = None
    from vit_port import VisionTransformer

METHODS = ("finetune", "l2p", "dualprompt", "coda", "slca", "star")
NUM_TASKS = 10


# ---------------------------------------------------------------------------------------------
# The ViT forward with prompt injection (timm's Block and Attention, restated).
# ---------------------------------------------------------------------------------------------
def attention(attn, x, prefix=None, value_residual=None, math_attention=False):
    """timm Attention.forward with optional prefix keys/values and a value residual.

    prefix: (pk, pv), each [B, P, D]: reshaped per head and concatenated in front of K and V.
    value_residual: [B, D]: added to every token's value, per head (STAR-Prompt).
    """
    B, N, _ = x.shape
    H, Dh = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [B, H, N, Dh]
    q, k = attn.q_norm(q), attn.k_norm(k)
    if value_residual is not None:      # STAR-Prompt: v <- v + s per head
        v = v + value_residual.reshape(B, 1, H, Dh).permute(0, 2, 1, 3).to(v.dtype)
    if prefix is not None:              # prefix tuning: [pk; k], [pv; v]
        pk, pv = (t.reshape(B, -1, H, Dh).permute(0, 2, 1, 3).to(k.dtype) for t in prefix)
        k = torch.cat((pk, k), dim=2)
        v = torch.cat((pv, v), dim=2)
    if math_attention:
        x = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    else:
        x = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    x = attn.norm(x.transpose(1, 2).reshape(B, N, attn.attn_dim))
    return attn.proj(x)


def vit_features(vit, images, prompt_tokens=None, prefixes=None, value_residuals=None,
                 math_attention=False):
    """Token features [B, N, D] after the final norm.

    prompt_tokens: [B, T, D] inserted after [CLS], each with the [CLS] position embedding (L2P).
    prefixes: {layer: (pk, pv)}; value_residuals: {layer: [B, D]}.
    """
    patches = vit.patch_embed(images)                      # [B, HW, D]
    B = patches.shape[0]
    pos = vit.pos_embed                                    # [1, 1 + HW, D] ([CLS] first)
    cls = vit.cls_token.expand(B, -1, -1) + pos[:, :1]
    parts = [cls]
    if prompt_tokens is not None:
        parts.append(prompt_tokens + pos[:, :1])
    parts.append(patches + pos[:, 1:])
    x = vit.norm_pre(vit.pos_drop(torch.cat(parts, dim=1)))
    prefixes = prefixes or {}
    value_residuals = value_residuals or {}
    for i, blk in enumerate(vit.blocks):
        y = attention(blk.attn, blk.norm1(x), prefixes.get(i), value_residuals.get(i), math_attention)
        x = x + blk.drop_path1(blk.ls1(y))
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return vit.norm(x)


def unit(x, dim=-1, eps=1e-12):
    """The references' l2_normalize: x * rsqrt(max(sum x^2, eps))."""
    return x * torch.rsqrt(torch.clamp_min((x * x).sum(dim=dim, keepdim=True), eps))


def batchwise_vote(idx, pool_size, top_k):
    """l2p/dualprompt-pytorch batchwise_prompt: the top_k most frequent prompt ids in the batch."""
    prompt_id, id_counts = torch.unique(idx, return_counts=True, sorted=True)
    if prompt_id.shape[0] < pool_size:
        fill = pool_size - prompt_id.shape[0]
        prompt_id = torch.cat([prompt_id, torch.full((fill,), int(idx.min()), device=idx.device)])
        id_counts = torch.cat([id_counts, torch.zeros(fill, dtype=id_counts.dtype, device=idx.device)])
    major = prompt_id[torch.topk(id_counts, k=top_k).indices]
    return major.expand(idx.shape[0], -1)


def uniform(*shape, lo=-1.0, hi=1.0):
    return nn.Parameter(torch.empty(*shape).uniform_(lo, hi))


def orthogonal(*shape):
    p = nn.Parameter(torch.zeros(*shape))
    nn.init.orthogonal_(p)
    return p


# ---------------------------------------------------------------------------------------------
# Methods. Each: loss(images, labels) for training, logits(images) for evaluation,
# optimizer(), and the backbone it freezes.
# ---------------------------------------------------------------------------------------------
class Method(nn.Module):
    frozen_backbone = True
    clip_grad = None

    def __init__(self, vit, num_classes, math_attention):
        super().__init__()
        self.vit = vit
        self.dim = vit.embed_dim
        self.num_classes = num_classes
        self.math = math_attention
        self.head = nn.Linear(self.dim, num_classes)
        per_task = num_classes // NUM_TASKS
        self.task = NUM_TASKS - 1                      # simulate the last task
        self.seen = (self.task + 1) * per_task
        self.past = self.task * per_task
        if self.frozen_backbone:
            vit.requires_grad_(False)

    def query(self, images):
        """The frozen ViT's [CLS] after the final norm, without grad (L2P/DualPrompt/CODA)."""
        with torch.no_grad():
            return vit_features(self.vit, images, math_attention=self.math)[:, 0]

    def class_mask(self, logits):
        """train_mask=True of l2p/dualprompt-pytorch: only the current task's classes."""
        keep = torch.zeros(self.num_classes, dtype=torch.bool, device=logits.device)
        keep[self.past:self.seen] = True
        return logits.masked_fill(~keep, float("-inf"))

    def trainable(self):
        return [p for p in self.parameters() if p.requires_grad]

    def optimizer(self):
        return torch.optim.Adam(self.trainable(), lr=1e-3)

    def train_step(self, opt, images, labels, autocast=contextlib.nullcontext):
        """One optimiser step as the reference trains: loss, backward, clipping where it clips."""
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = self.loss(images, labels)
        loss.backward()
        if self.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable(), self.clip_grad)
        opt.step()


class Finetune(Method):
    frozen_backbone = False

    def logits(self, images):
        return self.head(vit_features(self.vit, images, math_attention=self.math)[:, 0])

    def loss(self, images, labels):
        return F.cross_entropy(self.logits(images), labels)

    def optimizer(self):
        return torch.optim.Adam(self.trainable(), lr=1e-4)


class SLCA(Finetune):
    def __init__(self, vit, num_classes, math_attention):
        super().__init__(vit, num_classes, math_attention)
        # convs/vits.py:709-711: a fresh nn.LayerNorm(768) (PyTorch's eps 1e-5) as the final norm
        vit.norm = nn.LayerNorm(self.dim)

    def loss(self, images, labels):   # models/slca.py: CE over logits[:, known_classes:]
        return F.cross_entropy(self.class_mask(self.logits(images)), labels)

    def optimizer(self):
        return torch.optim.SGD([
            {"params": [p for p in self.vit.parameters() if p.requires_grad], "lr": 1e-4},
            {"params": self.head.parameters(), "lr": 1e-2}], momentum=0.9, weight_decay=5e-4)


class L2P(Method):
    clip_grad = 1.0

    def __init__(self, vit, num_classes, math_attention, pool=10, length=5, top_k=5, pull=0.1):
        super().__init__(vit, num_classes, math_attention)
        self.pool, self.length, self.top_k, self.pull = pool, length, top_k, pull
        self.batchwise_eval = True   # batchwise_prompt also votes at evaluation
        self.prompt = uniform(pool, length, self.dim, lo=0.0)  # nn.init.uniform_ default [0, 1)
        self.key = uniform(pool, self.dim, lo=0.0)

    def forward_prompted(self, images):
        q = unit(self.query(images))                        # [B, D]
        key = unit(self.key)                                # [M, D]
        idx = torch.topk(q @ key.t(), k=self.top_k, dim=1).indices
        if self.training or self.batchwise_eval:
            idx = batchwise_vote(idx, self.pool, self.top_k)    # [B, k]
        tokens = self.prompt[idx].flatten(1, 2)             # [B, k * L, D]
        x = vit_features(self.vit, images, prompt_tokens=tokens, math_attention=self.math)
        n = tokens.shape[1]
        logits = self.head(x[:, 1:1 + n].mean(dim=1))       # head_type='prompt'
        reduce_sim = (key[idx] * q.unsqueeze(1)).sum() / images.shape[0]
        return logits, reduce_sim

    def logits(self, images):
        return self.forward_prompted(images)[0]

    def loss(self, images, labels):
        logits, reduce_sim = self.forward_prompted(images)
        return F.cross_entropy(self.class_mask(logits), labels) - self.pull * reduce_sim


class DualPrompt(Method):
    clip_grad = 1.0

    def __init__(self, vit, num_classes, math_attention, pool=10, e_length=5, g_length=5,
                 g_layers=(0, 1), e_layers=(2, 3, 4), pull=1.0):
        super().__init__(vit, num_classes, math_attention)
        depth = len(vit.blocks)
        self.g_layers = [l for l in g_layers if l < depth]
        self.e_layers = [l for l in e_layers if l < depth]
        self.pool, self.pull = pool, pull
        # [layers, 2 (key, value), (pool,) length, D]; the reference stores [.., heads, D / heads]
        self.g_prompt = uniform(len(self.g_layers), 2, g_length, self.dim)
        self.e_prompt = uniform(len(self.e_layers), 2, pool, e_length, self.dim)
        self.e_key = uniform(pool, self.dim)

    def forward_prompted(self, images, train):
        B = images.shape[0]
        q = unit(self.query(images))
        key = unit(self.e_key)
        idx = torch.topk(q @ key.t(), k=1, dim=1).indices                 # [B, 1]
        idx = batchwise_vote(idx, self.pool, 1)
        if train:                                                         # use_prompt_mask
            idx = torch.full((B, 1), self.task, dtype=torch.long, device=images.device)
        e = self.e_prompt[:, :, idx[:, 0]]                                # [Le, 2, B, L, D]
        prefixes = {}
        for j, layer in enumerate(self.g_layers):
            g = self.g_prompt[j].unsqueeze(1).expand(-1, B, -1, -1)       # [2, B, L, D]
            prefixes[layer] = (g[0], g[1])
        for j, layer in enumerate(self.e_layers):
            prefixes[layer] = (e[j, 0], e[j, 1])
        x = vit_features(self.vit, images, prefixes=prefixes, math_attention=self.math)
        logits = self.head(x[:, 0])
        reduce_sim = (key[idx] * q.unsqueeze(1)).sum() / B
        return logits, reduce_sim

    def logits(self, images):
        return self.forward_prompted(images, train=False)[0]

    def loss(self, images, labels):
        logits, reduce_sim = self.forward_prompted(images, train=True)
        return F.cross_entropy(self.class_mask(logits), labels) - self.pull * reduce_sim


class CodaPrompt(Method):
    def __init__(self, vit, num_classes, math_attention, pool=100, length=8, layers=(0, 1, 2, 3, 4)):
        super().__init__(vit, num_classes, math_attention)
        self.layers = [l for l in layers if l < len(vit.blocks)]
        self.pool, self.length = pool, length
        # zoo.py: tensor_prompt (orthogonal init) + Gram-Schmidt; orthogonal init stands in for both
        self.P = nn.ParameterList([orthogonal(pool, length, self.dim) for _ in self.layers])
        self.K = nn.ParameterList([orthogonal(pool, self.dim) for _ in self.layers])
        self.A = nn.ParameterList([orthogonal(pool, self.dim) for _ in self.layers])

    def prompts(self, q, train):
        per_task = self.pool // NUM_TASKS
        s, f = self.task * per_task, (self.task + 1) * per_task
        prefixes = {}
        for j, layer in enumerate(self.layers):
            K, A, p = self.K[j], self.A[j], self.P[j]
            if train:   # past tasks' components frozen
                K = torch.cat((K[:s].detach().clone(), K[s:f]), dim=0)
                A = torch.cat((A[:s].detach().clone(), A[s:f]), dim=0)
                p = torch.cat((p[:s].detach().clone(), p[s:f]), dim=0)
            else:
                K, A, p = K[:f], A[:f], p[:f]
            a_query = torch.einsum("bd,kd->bkd", q, A)                    # [B, k, D]
            n_K = F.normalize(K, dim=1)
            qn = F.normalize(a_query, dim=2)
            alpha = torch.einsum("bkd,kd->bk", qn, n_K)                   # [B, k]
            P_ = torch.einsum("bk,kld->bld", alpha, p)                    # [B, L, D]
            i = self.length // 2
            prefixes[layer] = (P_[:, :i], P_[:, i:])
        return prefixes

    def forward_prompted(self, images, train):
        q = self.query(images)
        x = vit_features(self.vit, images, prefixes=self.prompts(q, train), math_attention=self.math)
        return self.head(x[:, 0])

    def logits(self, images):
        return self.forward_prompted(images, train=False)

    def loss(self, images, labels):   # learners/prompt.py:28-34: past classes' logits -inf
        return F.cross_entropy(self.class_mask(self.forward_prompted(images, train=True)), labels)


class StarPrompt(Method):
    def __init__(self, vit, num_classes, math_attention, clip_dim=512, lambda_ortho=10.0):
        super().__init__(vit, num_classes, math_attention)
        self.layers = list(range(len(vit.blocks)))
        self.clip_dim, self.lambda_ortho = clip_dim, lambda_ortho
        self.p = nn.ParameterList([orthogonal(num_classes, self.dim) for _ in self.layers])
        self.a = nn.ParameterList([orthogonal(num_classes, clip_dim) for _ in self.layers])
        self.register_buffer("keys", unit(torch.randn(num_classes, clip_dim)))
        self.clip_query = None   # set per batch: the stand-in for CLIP's image embedding

    @staticmethod
    def compute_maps(q, a, keys):
        filt = torch.softmax(a, dim=-1)
        qa = q.unsqueeze(1).expand(q.shape[0], a.shape[0], q.shape[-1]) * filt[None]
        return torch.einsum("bcd,cd->bc", F.normalize(qa, dim=-1), keys) * 5

    @staticmethod
    def keep_argmax(w):
        with torch.no_grad():   # in place, as the reference's get_masked_clip_out
            mask = torch.ones_like(w, dtype=torch.bool)
            mask.scatter_(1, w.argmax(dim=1, keepdim=True), False)
            w[mask] = 0.0
        return w

    def residuals(self, q, train):
        out = {}
        past, cur = (self.past, self.seen) if train else (0, self.seen)
        for j, layer in enumerate(self.layers):
            a, p = self.a[j], self.p[j]
            if past > 0:
                with torch.no_grad():
                    w_prev = self.compute_maps(q, a[:past].detach(), self.keys[:past])
                w_cur = self.compute_maps(q, a[past:cur], self.keys[past:cur])
                w = self.keep_argmax(torch.cat((w_prev.detach(), w_cur), dim=1))
                with torch.no_grad():
                    s_past = w[:, :past] @ p[:past]
                out[layer] = s_past.detach() + w[:, past:cur] @ p[past:cur]
            else:
                w = self.keep_argmax(self.compute_maps(q, a[:cur], self.keys[:cur]))
                out[layer] = w @ p[:cur]
        return out

    def ortho_loss(self):
        if self.past == 0:
            return 0.0
        total = 0.0
        for p in self.p:
            cur, old = p[self.past:self.seen], p[:self.past].detach()
            eye = torch.eye(cur.shape[0], dtype=torch.bool, device=p.device)
            total = total + ((cur @ cur.T)[eye] - 1).pow(2).mean() + (cur @ old.T).pow(2).mean()
        return total / len(self.p)

    def forward_prompted(self, images, train):
        q = self.clip_query                         # stand-in for CLIP: not computed here
        x = vit_features(self.vit, images, value_residuals=self.residuals(q, train),
                         math_attention=self.math)
        return self.head(x[:, 0])

    def logits(self, images):
        return self.forward_prompted(images, train=False)

    def loss(self, images, labels):
        # starprompt.py:149-176: past classes' logits -inf
        return (F.cross_entropy(self.class_mask(self.forward_prompted(images, train=True)), labels)
                + self.lambda_ortho * self.ortho_loss())


FACTORY = {"finetune": Finetune, "l2p": L2P, "dualprompt": DualPrompt, "coda": CodaPrompt,
           "slca": SLCA, "star": StarPrompt}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, batch, warmup, windows, iters):
    for _ in range(warmup):
        fn()
    sync(device)
    rates = []
    for _ in range(windows):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        rates.append(batch * iters / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def peak_mib(device):
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def build_vit(args):
    if args.model_overrides or timm is None:
        return VisionTransformer(img_size=args.image_size, patch_size=args.patch, embed_dim=args.dim or 768,
                                 depth=args.depth or 12, num_heads=args.heads or 12, num_classes=0)
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0,
                             img_size=args.image_size)


def self_check(args):
    """vit_features without prompts must equal timm's own forward_features (same weights), and a
    zero value residual must change nothing."""
    if timm is None:
        return "skipped: no timm (vit_port.py restates it)"
    torch.manual_seed(0)
    vit = build_vit(args).eval()
    x = torch.randn(2, 3, args.image_size, args.image_size)
    with torch.no_grad():
        ref = vit.forward_features(x)
        ours = vit_features(vit, x)
        zero = vit_features(vit, x, value_residuals={0: torch.zeros(2, vit.embed_dim)})
        mat = vit_features(vit, x, math_attention=True)
    for name, t in (("sdpa", ours), ("zero residual", zero), ("math attention", mat)):
        err = (t - ref).abs().max().item()
        if err > 1e-4:
            sys.exit(f"self-check failed: {name} differs from timm's forward_features by {err:g}")
    return True


def run_method(name, precision, args, device):
    torch.manual_seed(0)
    vit = build_vit(args)
    method = FACTORY[name](vit, args.classes, args.attention == "math").to(device)
    opt = method.optimizer()
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(method.past, method.seen, (args.batch,), device=device)
    if isinstance(method, StarPrompt):
        method.clip_query = torch.randn(args.batch, method.clip_dim, device=device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" \
        else (lambda: torch.autocast(device.type, enabled=False))
    trainable = method.trainable()

    def train_step():
        method.train_step(opt, images, labels, autocast)

    def eval_step():
        with torch.no_grad(), autocast():
            method.logits(images)

    row = {"method": name, "precision": precision,
           "trainable_params": sum(p.numel() for p in trainable),
           "total_params": sum(p.numel() for p in method.parameters())}
    method.train()   # dropout and drop-path rates are 0: train/eval mode changes nothing here
    reset_peak(device)
    row["train_images_per_s"], row["train_windows"] = timed(
        train_step, device, args.batch, args.warmup, args.windows, args.iters)
    row["train_peak_mib"] = peak_mib(device)
    opt.zero_grad(set_to_none=True)
    method.eval()
    reset_peak(device)
    row["eval_images_per_s"], row["eval_windows"] = timed(
        eval_step, device, args.batch, args.warmup, args.windows, args.iters)
    row["eval_peak_mib"] = peak_mib(device)
    del method, opt, vit, images, labels
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=["cuda", "cpu"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--dim", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--attention", default="sdpa", choices=["sdpa", "math"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10, help="iterations per timed window")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="tiny CPU run: ViT dim 128, depth 5, heads 2 (unless --dim/--depth/--heads "
                         "say otherwise), image 32, patch 16, batch 4, 1 warm-up and 1 timed iteration")
    ap.add_argument("--self-check", action="store_true",
                    help="compare the restated ViT forward with timm's on the CPU first (on in --cpu-smoke)")
    ap.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    args = ap.parse_args()

    if args.cpu_smoke:
        args.device, args.batch, args.image_size, args.patch = "cpu", 4, 32, 16
        args.dim, args.depth, args.heads = args.dim or 128, args.depth or 5, args.heads or 2
        args.warmup, args.windows, args.iters = 1, 1, 1
        args.self_check = True
    args.model_overrides = any(v is not None for v in (args.depth, args.dim, args.heads)) \
        or args.patch != 16
    if args.model_overrides:
        args.depth, args.dim, args.heads = args.depth or 12, args.dim or 768, args.heads or 12
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    for m in methods:
        if m not in FACTORY:
            ap.error(f"unknown method {m!r} (known: {', '.join(METHODS)})")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            ap.error(f"unknown precision {p!r} (fp32, bf16)")
    if args.classes % NUM_TASKS:
        ap.error(f"--classes must be a multiple of {NUM_TASKS}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible (use --device cpu or --cpu-smoke)")
    if args.threads:
        torch.set_num_threads(args.threads)

    env = {"torch": torch.__version__, "timm": timm.__version__ if timm else "none (vit_port.py)", "python": platform.python_version(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
           "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "threads": torch.get_num_threads(), "batch": args.batch, "image_size": args.image_size,
           "patch": args.patch, "backbone": "vit_base_patch16_224" if not args.model_overrides else
           f"VisionTransformer(dim={args.dim}, depth={args.depth}, heads={args.heads})",
           "classes": args.classes, "attention": args.attention, "warmup": args.warmup,
           "windows": args.windows, "iters_per_window": args.iters,
           "note": "star: a random [B, 512] tensor stands in for CLIP's image embedding (CLIP not run)"}
    if args.self_check:
        env["self_check"] = self_check(args)
        print("self-check: the restated ViT forward matches timm's forward_features", file=sys.stderr)
    depth = args.depth if args.model_overrides else 12
    if depth < 5 and any(m in ("dualprompt", "coda") for m in methods):
        print(f"note: depth {depth}: DualPrompt/CODA-Prompt prompt only their layers below {depth} "
              "(published: G 0-1 and E 2-4; CODA 0-4)", file=sys.stderr)
    rows = []
    for m in methods:
        for p in precisions:
            rows.append(run_method(m, p, args, device))
            r = rows[-1]
            print(f"# {m} {p}: train {r['train_images_per_s']:.1f} img/s, "
                  f"eval {r['eval_images_per_s']:.1f} img/s", file=sys.stderr, flush=True)

    print(f"torch {env['torch']}, timm {env['timm']}, {env['device']}, {env['backbone']}, "
          f"batch {args.batch}, image {args.image_size}, attention {args.attention}, "
          f"median of {args.windows} x {args.iters} iterations")
    head = f"{'method':<11} {'prec':<5} {'trainable':>10} {'train img/s':>12} {'train MiB':>10} " \
           f"{'eval img/s':>11} {'eval MiB':>9}"
    print(head)
    print("-" * len(head))
    fmt_mib = lambda v: "-" if v is None else f"{v:.0f}"
    for r in rows:
        print(f"{r['method']:<11} {r['precision']:<5} {r['trainable_params']:>10} "
              f"{r['train_images_per_s']:>12.1f} {fmt_mib(r['train_peak_mib']):>10} "
              f"{r['eval_images_per_s']:>11.1f} {fmt_mib(r['eval_peak_mib']):>9}")
    print("star: a random [B, 512] tensor stands in for CLIP's image embedding (CLIP is not run).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
