"""Data-parallel search throughput at 1 and 2 ranks, time per phase, and bytes all-reduced.

Each (strategy, world size) runs under torchrun (gloo on CPU, one thread per rank; NCCL when a
GPU per rank is there) on the same global batch, the same initial weights and batches. A step
is what the search loop does: the architecture step with its gradients averaged over ranks,
the weight step's forward, backward, the bucketed gradient average, clipping and the update.
Prints images/s, the speed-up and scaling efficiency of 2 ranks over 1, and the bytes each
rank all-reduces per step (NASP reduces only the selected ops' gradients). The network and the
batches take the memory format ``nasp search`` would use on the device
(``nasp.device.resolve_memory_format``: channels_last on CPU and CUDA; ``--memory-format``
overrides), so the figures are those of a search. Usage:

    python benchmarks/scaling.py                       # paper size: C=16, 8 cells, batch 64
    python benchmarks/scaling.py --channels 8 --layers 5 --batch-size 32 --steps 2   # smaller
    python benchmarks/scaling.py --worlds 2 --steps 1 --warmup 0   # bytes per step only
    python benchmarks/scaling.py --memory-format contiguous        # NCHW, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

STRATEGIES = ("nasp", "darts", "darts2")


def worker(args: argparse.Namespace) -> dict | None:
    import torch
    import torch.nn.functional as F

    from nasp.device import resolve_memory_format, tune_cpu_allocator
    from nasp.distributed import init_distributed
    from nasp.spaces import get_space
    from nasp.strategies import ArchContext, StrategySetup, create_strategy
    from nasp.supernet.cnn import SearchCNN
    from nasp.supernet.freeze import batch_norms, frozen_batch_stats

    torch.set_num_threads(args.threads)
    d = init_distributed(args.device, timeout_s=600)
    device = d.device
    if device.type == "cpu":
        tune_cpu_allocator()  # as nasp search does on the CPU
    fmt = resolve_memory_format(device, args.memory_format)  # as nasp search resolves it
    torch.manual_seed(0)
    space = get_space(args.space)
    model = SearchCNN(space, 3, 10, channels=args.channels, layers=args.layers).to(device)
    model = model.to(memory_format=fmt)
    strategy = create_strategy(args.worker, StrategySetup(space=space, device=device))
    d.broadcast_state(model, strategy.parameters())
    strategy.restored()
    bn = batch_norms(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    lo, hi = d.batch_rows(0, args.batch_size)
    g = torch.Generator().manual_seed(1)

    def batch():
        x = torch.randn(args.batch_size, 3, args.size, args.size, generator=g)
        y = torch.randint(0, 10, (args.batch_size,), generator=g)
        # this rank's shard, in the search's layout
        return x[lo:hi].to(device).contiguous(memory_format=fmt), y[lo:hi].to(device)

    train_b, val_b = batch(), batch()

    def loss_fn(b, w):
        return F.cross_entropy(model(b[0], w), b[1])

    ctx = ArchContext(loss_fn, params, opt, reduce=d.average_)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def iteration(times: dict | None) -> None:
        t0 = now()
        with frozen_batch_stats(bn):  # as the search loop runs it
            strategy.arch_step(ctx, train_b, val_b)
        sync()
        t1 = now()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(train_b, strategy.weighting())
        sync()
        t2 = now()
        loss.backward()
        sync()
        t3 = now()
        d.reduce_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sync()
        t4 = now()
        if times is not None:
            for k, a, b in (("arch", t0, t1), ("forward", t1, t2), ("backward", t2, t3),
                            ("reduce_step", t3, t4), ("total", t0, t4)):
                times[k] = times.get(k, 0.0) + b[0] - a[0]
                times["cpu_" + k] = times.get("cpu_" + k, 0.0) + b[1] - a[1]

    for _ in range(args.warmup):
        iteration(None)
    d.barrier()
    bytes0 = d.bytes_reduced
    times: dict = {}
    for _ in range(args.steps):
        iteration(times)
    out = {k: v / args.steps for k, v in times.items()}
    out["bytes_per_step"] = (d.bytes_reduced - bytes0) / args.steps
    if d.enabled:  # the slowest rank sets the pace: report the maximum over ranks
        import torch.distributed as dist

        vals = torch.tensor(list(out.values()), dtype=torch.float64)
        dist.all_reduce(vals, op=dist.ReduceOp.MAX, group=d.group)
        out = dict(zip(out, vals.tolist()))
    out["images_per_s"] = args.batch_size / out["total"]
    out["device"] = str(device)
    out["memory_format"] = str(fmt).removeprefix("torch.")
    out["world_size"] = d.world_size
    d.close()
    return out if d.is_main else None


def _launch(strategy: str, world: int, passed: list[str]) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={world}", __file__, "--worker", strategy, *passed]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        sys.exit(f"{strategy} at {world} rank(s) failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="nasp-7")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64, help="global batch")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu (gloo) or auto/cuda (NCCL, a GPU each)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--memory-format", default="auto",
                   choices=["auto", "channels_last", "contiguous"],
                   help="layout of the network and batches (auto: the device's, as nasp search)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--worlds", default="1,2")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        out = worker(args)
        if out is not None:
            print(json.dumps(out), flush=True)
        return
    passed = sys.argv[1:]
    for opt in ("--strategies", "--worlds", "--json"):
        passed = _without_option(passed, opt)
    worlds = [int(w) for w in args.worlds.split(",")]
    results: dict[str, dict[int, dict]] = {}
    for name in args.strategies.split(","):
        results[name] = {w: _launch(name, w, passed) for w in worlds}
    first = next(iter(next(iter(results.values())).values()))
    print(f"space={args.space} C={args.channels} layers={args.layers} {args.size}x{args.size} "
          f"global batch={args.batch_size} device={first['device']} "
          f"memory_format={first['memory_format']} threads/rank={args.threads} "
          f"steps={args.steps}")
    print(f"{'strategy':<9}{'ranks':>6}{'arch':>8}{'fwd':>8}{'bwd':>8}{'reduce':>8}"
          f"{'total s':>9}{'cpu s':>8}{'img/s':>8}{'MB/step':>9}")
    for name, by_world in results.items():
        for w, r in by_world.items():
            print(f"{name:<9}{w:>6}{r['arch']:>8.3f}{r['forward']:>8.3f}{r['backward']:>8.3f}"
                  f"{r['reduce_step']:>8.3f}{r['total']:>9.3f}{r['cpu_total']:>8.3f}"
                  f"{r['images_per_s']:>8.2f}{r['bytes_per_step'] / 2**20:>9.2f}")
        if 1 in by_world and 2 in by_world:
            speedup = by_world[2]["images_per_s"] / by_world[1]["images_per_s"]
            print(f"{'':<9}2 ranks / 1: x{speedup:.2f} throughput, "
                  f"scaling efficiency {speedup / 2:.0%}")
    top = max(worlds)
    if top > 1 and "nasp" in results and "darts" in results:
        ratio = results["nasp"][top]["bytes_per_step"] / results["darts"][top]["bytes_per_step"]
        print(f"bytes all-reduced per step, nasp / darts: {ratio:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


def _without_option(argv: list[str], option: str) -> list[str]:
    """argv minus ``option`` in both its ``--opt value`` and ``--opt=value`` spellings."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
