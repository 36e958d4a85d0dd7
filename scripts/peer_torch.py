#!/usr/bin/env python3
"""PyTorch peer of `repopt-tui bench model`: the same three models and the same training step,
timed in PyTorch on the CPU or on a CUDA device, one JSON line per model.

    python scripts/peer_torch.py --variant B1 --res 224 --bs 32 --device cuda:0

The step: forward, label-smoothed (0.1) cross-entropy, backward, the Grad Mult masks applied to
the target model's 3x3 kernels (the RepOptimizer), SGD with momentum 0.9 and weight decay 4e-5.
On the CPU each line also gives the mean seconds of the optimizer part of a step (mask multiply
and SGD step; not on GPUs, where timing it would need a sync inside the step).
Models as the official code defines them: the RepOpt-VGG target (conv3x3 -> BN -> ReLU), the
training-time RepVGG (3x3+BN, 1x1+BN, identity BN) and the Hyper-Search CSLA block (scaled 3x3,
scaled 1x1, scaled identity, one BN). `repopt-tui bench model --torch PYTHON --torch-script
scripts/peer_torch.py` runs it in the same invocation and prints the ratio.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# blocks per stage, width multipliers (a, a, a, b)
VARIANTS = {
    "T0": ([1, 2, 2, 1], [0.125, 0.125, 0.125, 0.125]),
    "T1": ([2, 2, 4, 1], [0.25, 0.25, 0.25, 0.5]),
    "A0": ([2, 4, 14, 1], [0.75, 0.75, 0.75, 2.5]),
    "A1": ([2, 4, 14, 1], [1, 1, 1, 2.5]),
    "B1": ([4, 6, 16, 1], [2, 2, 2, 4]),
    "B2": ([4, 6, 16, 1], [2.5, 2.5, 2.5, 5]),
    "L1": ([8, 14, 24, 1], [2, 2, 2, 4]),
    "L2": ([8, 14, 24, 1], [2.5, 2.5, 2.5, 5]),
}


def layout(variant):
    """(in, out, stride, index in stage) of every block, and the last width."""
    blocks, widths = VARIANTS[variant]
    cin = min(64, int(64 * widths[0]))
    plan = [(3, cin, 2, 0)]
    for count, base, w in zip(blocks, [64, 128, 256, 512], widths):
        cout = int(base * w)
        for i in range(count):
            plan.append((cin, cout, 2 if i == 0 else 1, i))
            cin = cout
    return plan, cin


class Target(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class RepVgg(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv_3x3 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn_3x3 = nn.BatchNorm2d(cout)
        self.conv_1x1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.bn_1x1 = nn.BatchNorm2d(cout)
        self.bn_identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x):
        y = self.bn_3x3(self.conv_3x3(x)) + self.bn_1x1(self.conv_1x1(x))
        if self.bn_identity is not None:
            y = y + self.bn_identity(x)
        return F.relu(y)


class Csla(nn.Module):
    def __init__(self, cin, cout, stride, init):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.scale_conv = nn.Parameter(torch.full((cout,), float(init)))
        self.conv_1x1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.scale_1x1 = nn.Parameter(torch.full((cout,), float(init)))
        self.scale_identity = (
            nn.Parameter(torch.ones(cout)) if cin == cout and stride == 1 else None
        )
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = self.conv(x) * self.scale_conv.view(1, -1, 1, 1)
        y = y + self.conv_1x1(x) * self.scale_1x1.view(1, -1, 1, 1)
        if self.scale_identity is not None:
            y = y + x * self.scale_identity.view(1, -1, 1, 1)
        return F.relu(self.bn(y))


def build(kind, variant, classes):
    plan, last = layout(variant)
    blocks = []
    for cin, cout, stride, i in plan:
        if kind == "target":
            blocks.append(Target(cin, cout, stride))
        elif kind == "repvgg":
            blocks.append(RepVgg(cin, cout, stride))
        else:
            blocks.append(Csla(cin, cout, stride, 1.0 if i == 0 else math.sqrt(2.0 / i)))
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, classes))


def masks_of(model, device):
    """Grad Mult masks s^2 + [centre] t^2 + [o = i, centre] 1 with random positive scales."""
    gen = torch.Generator().manual_seed(1)
    masks = {}
    for block in model:
        if isinstance(block, Target):
            w = block.conv.weight
            cout, cin = w.shape[:2]
            s = torch.rand(cout, generator=gen) + 0.5
            t = torch.rand(cout, generator=gen) + 0.5
            m = (s**2).view(-1, 1, 1, 1).expand(cout, cin, 3, 3).clone()
            m[:, :, 1, 1] += (t**2).view(-1, 1)
            if cin == cout and block.conv.stride == (1, 1):
                idx = torch.arange(cout)
                m[idx, idx, 1, 1] += 1.0
            masks[w] = m.to(device)
    return masks


def bench(kind, a, device):
    torch.manual_seed(0)
    model = build(kind, a.variant, a.classes).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    masks = masks_of(model, device) if kind == "target" else {}
    x = torch.randn(a.bs, 3, a.res, a.res, device=device)
    y = torch.randint(0, a.classes, (a.bs,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    opt_s = [0.0]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        before_opt = time.perf_counter()
        for p, m in masks.items():
            p.grad.mul_(m)
        opt.step()
        opt_s[0] += time.perf_counter() - before_opt
        return loss

    for _ in range(a.warm):
        step()
    sync()
    opt_s[0] = 0.0
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.item()
    sync()
    dt = (time.perf_counter() - start) / a.steps
    return {
        "kind": kind,
        "variant": a.variant,
        "res": a.res,
        "bs": a.bs,
        "device": str(device),
        "torch": torch.__version__,
        "step_s": round(dt, 5),
        "img_per_s": round(a.bs / dt, 2),
        "optimizer_s": round(opt_s[0] / a.steps, 5) if device.type == "cpu" else None,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", default="target,repvgg,hs")
    ap.add_argument("--variant", default="B1", choices=sorted(VARIANTS))
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for kind in a.kinds.split(","):
        print(json.dumps(bench(kind, a, dev)), flush=True)
