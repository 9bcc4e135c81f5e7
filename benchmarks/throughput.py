"""Images per second of the DARTS_V2 evaluation network (20 cells, C=36, 3x32x32, batch 96).

Training = forward + backward + SGD step (auxiliary head and drop-path on, as in the paper's
recipe); inference = eval-mode forward without autograd. Runs on the CPU always, and on CUDA
(bf16 autocast + channels_last, as ``nasp train`` does there) when a GPU is present. Inputs are
random tensors already on the device, so the figures measure the network, not data loading.

    PYTHONPATH=src python benchmarks/throughput.py [--steps 10] [--warmup 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from nasp.genotype import GENOTYPES
from nasp.models import build_eval_model, count_flops, count_params


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, batch: int, steps: int, warmup: int, layers: int,
            channels: int) -> dict[str, float]:
    """Seconds-per-step based throughput of training and inference on ``device``."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_eval_model(GENOTYPES["cnn"]["DARTS_V2"], 3, 10, 32, channels=channels,
                             layers=layers, auxiliary=True, drop_path_prob=0.2).to(device)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def train_step() -> None:
        with amp():
            logits, aux = model(x)
            loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        with amp():
            model(x)

    out = {}
    for name, step, mode in (("train", train_step, True), ("inference", infer_step, False)):
        model.train(mode)
        for _ in range(warmup):
            step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        out[name] = batch * steps / (time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--device", action="append",
                   help="device(s) to measure (default: cpu, and cuda when available)")
    args = p.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    net = build_eval_model(GENOTYPES["cnn"]["DARTS_V2"], 3, 10, 32, channels=args.channels,
                           layers=args.layers)
    print(f"DARTS_V2, {args.layers} cells, C={args.channels}, 3x32x32, batch {args.batch_size}: "
          f"{count_params(net) / 1e6:.2f}M params, "
          f"{count_flops(net, (3, 32, 32)) / 1e6:.0f}M multiply-adds per image")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    rows = []
    for name in devices:
        dev = torch.device(name)
        label = torch.cuda.get_device_name(dev) + " (bf16, NHWC)" if dev.type == "cuda" else \
            "cpu (fp32)"
        r = measure(dev, args.batch_size, args.steps, args.warmup, args.layers, args.channels)
        rows.append((label, r["train"], r["inference"]))
    width = max(len(r[0]) for r in rows)
    print(f"{'device':<{width}}  {'train img/s':>12}  {'inference img/s':>16}")
    for label, tr, inf in rows:
        print(f"{label:<{width}}  {tr:>12.1f}  {inf:>16.1f}")


if __name__ == "__main__":
    main()
