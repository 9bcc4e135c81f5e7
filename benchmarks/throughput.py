"""Images per second of the DARTS_V2 evaluation network (20 cells, C=36, 3x32x32, batch 96).

Training = forward + backward + SGD step (auxiliary head and drop-path on, as in the paper's
recipe); inference = eval-mode forward without autograd. Runs on the CPU always, and on CUDA
when a GPU is present; the memory format is the device's (``nasp.device``, ``--memory-format``
overrides). On CUDA cuDNN's autotuner is on (``cudnn.benchmark``, as ``nasp train`` sets it:
the shapes are fixed) and both fp32 and bf16 autocast are measured by default, since ``nasp
train`` uses bf16 on CUDA and fp32 is the reference; on the CPU fp32 alone (``--precision``
overrides both). Inputs are random tensors already on the device, so the figures
measure the network, not data loading. ``--peak`` adds the arithmetic rate reached, against a
large single-precision matrix product on the same threads (the CPU's practical peak).

    PYTHONPATH=src python benchmarks/throughput.py [--steps 10] [--warmup 3] [--device cpu]
    PYTHONPATH=src python benchmarks/throughput.py --threads 1 --peak --profile prof/
    PYTHONPATH=src python benchmarks/throughput.py --device cuda --precision bf16
    PYTHONPATH=src python benchmarks/throughput.py --threads 1 --compile   # eager and compiled

``--compile`` compiles the whole network as ``nasp train --compile on`` does (on CUDA with CUDA
graphs, ``reduce-overhead``) and prints eager and compiled rows side by side; the warm-up's
time beyond as many steady steps is reported as compilation (paid once per machine: inductor
keeps the generated code in its cache, see ``nasp.compiled``).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from nasp.device import autocast, resolve_memory_format, tune_cpu_allocator
from nasp.genotype import GENOTYPES
from nasp.models import build_eval_model, count_flops, count_params


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best-of FLOP/s of an n x n float32 matrix product: what the arithmetic units deliver
    when nothing else limits them (CUDA: tf32 stays off, so this is the fp32 rate)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def precisions(device: torch.device, choice: str) -> list[str]:
    """The precisions to measure on ``device``: ``auto`` is fp32 and bf16 on CUDA (what
    ``nasp train`` runs there, against the fp32 reference), fp32 alone elsewhere."""
    if choice == "auto":
        return ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    return ["fp32", "bf16"] if choice == "both" else [choice]


def measure(device: torch.device, batch: int, steps: int, warmup: int, layers: int,
            channels: int, memory_format: str = "auto",
            profile_dir: str | None = None, bf16: bool = False,
            compiled: bool = False) -> dict[str, float]:
    """Seconds-per-step based throughput of training and inference on ``device``, the forward
    under bf16 autocast when ``bf16`` (as ``nasp train`` runs it); with ``compiled`` the whole
    network is compiled as ``nasp train --compile on`` does (CUDA graphs on a GPU), and the
    warm-up's extra time is reported as compilation."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # as nasp train: fixed shapes, fastest kernels
    torch.manual_seed(0)
    model = build_eval_model(GENOTYPES["cnn"]["DARTS_V2"], 3, 10, 32, channels=channels,
                             layers=layers, auxiliary=True, drop_path_prob=0.2).to(device)
    fmt = resolve_memory_format(device, memory_format)
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    net = model
    if compiled:
        from nasp.compiled import compile_mode_for, compile_network, mark_step, resolve_compile

        resolve_compile("on", device)  # a clear error where the platform cannot compile
        net = compile_network(model, compile_mode_for(device, "train"))
        model.drop_path_prob = torch.tensor(0.2, device=device)  # an input of the graph
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def amp():
        return autocast(device, bf16)

    def train_step() -> None:
        if compiled:
            mark_step(net)
        with amp():
            logits, aux = net(x)
            loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        with amp():
            net(x)

    out: dict = {"memory_format": str(fmt).removeprefix("torch.")}
    precision = "bf16" if bf16 else "fp32"
    for name, step, mode in (("train", train_step, True), ("inference", infer_step, False)):
        model.train(mode)
        w0 = time.perf_counter()
        for _ in range(warmup):
            step()
        _sync(device)
        warm = time.perf_counter() - w0
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        _sync(device)
        elapsed = time.perf_counter() - t0
        out[name] = batch * steps / elapsed
        # compilation: what the warm-up took beyond as many steady steps
        out["compile_" + name] = max(warm - warmup * elapsed / steps, 0.0) if compiled else 0.0
        # on a shared CPU the process's CPU time measures the work itself (exact with 1 thread)
        out["cpu_" + name] = batch * steps / max(time.process_time() - c0, 1e-9)
        if profile_dir:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                step()
                _sync(device)
            os.makedirs(profile_dir, exist_ok=True)
            path = os.path.join(profile_dir, f"{device.type}-{precision}-{name}.txt")
            with open(path, "w") as f:
                f.write(f"DARTS_V2 {name} step, batch {batch}, {precision}, "
                        f"{out['memory_format']}, "
                        f"{torch.get_num_threads()} threads; top 10 by self CPU time\n")
                f.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
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
    p.add_argument("--memory-format", default="auto",
                   choices=["auto", "channels_last", "contiguous"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "both"],
                   help="auto: fp32 and bf16 (autocast) on CUDA, fp32 on the CPU")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--compile", nargs="?", const="both", default="off",
                   choices=["off", "on", "both"],
                   help="compile the network as nasp train --compile on does (CUDA graphs on "
                        "a GPU); --compile alone (both): eager and compiled rows side by side, "
                        "with the ratio and the compilation time")
    p.add_argument("--peak", action="store_true",
                   help="also measure a large matmul's FLOP/s and report the fraction reached")
    p.add_argument("--profile", metavar="DIR", help="write torch.profiler tables to DIR")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cpu" in devices:
        tune_cpu_allocator()  # as nasp train does on the CPU
    net = build_eval_model(GENOTYPES["cnn"]["DARTS_V2"], 3, 10, 32, channels=args.channels,
                           layers=args.layers)
    macs = count_flops(net, (3, 32, 32))
    print(f"DARTS_V2, {args.layers} cells, C={args.channels}, 3x32x32, batch {args.batch_size}: "
          f"{count_params(net) / 1e6:.2f}M params, {macs / 1e6:.0f}M multiply-adds per image")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    rows = []
    compile_notes: list[str] = []
    for name in devices:
        dev = torch.device(name)
        peak = matmul_peak_gflops(dev) if args.peak else None
        modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
        for precision in precisions(dev, args.precision):
            for comp in modes:
                r = measure(dev, args.batch_size, args.steps, args.warmup, args.layers,
                            args.channels, args.memory_format, args.profile,
                            precision == "bf16", comp)
                fmt = r["memory_format"]
                what = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
                cpu = (r["cpu_train"], r["cpu_inference"]) if dev.type == "cpu" else None
                how = ", compiled" if comp else ""
                # the fp32 matmul peak is a fair yardstick for fp32 rows only
                rows.append((f"{what} ({precision}, {fmt}{how})", r["train"], r["inference"],
                             peak if precision == "fp32" else None, cpu))
                if comp:
                    compile_notes.append(f"{what} ({precision}): compilation took "
                                         f"{r['compile_train']:.1f} s (training graph) + "
                                         f"{r['compile_inference']:.1f} s (inference graph)")
    width = max(len(r[0]) for r in rows)
    print(f"{'device':<{width}}  {'train img/s':>12}  {'inference img/s':>16}")
    for label, tr, inf, _, cpu in rows:
        print(f"{label:<{width}}  {tr:>12.1f}  {inf:>16.1f}")
        if cpu is not None:
            print(f"{'  per CPU second':<{width}}  {cpu[0]:>12.1f}  {cpu[1]:>16.1f}")
    for note in compile_notes:  # paid once per machine: inductor's cache keeps the code
        print(note)
    for label, tr, inf, *_ in rows:
        if "compiled" in label:
            ref = [r for r in rows if r[0] == label.replace(", compiled", "")]
            if ref:
                print(f"{label}: training x{tr / ref[0][1]:.2f}, inference "
                      f"x{inf / ref[0][2]:.2f} of eager")
    for label, tr, inf, peak, _ in rows:
        if peak is None:
            continue
        # training does about three forwards' arithmetic (forward, input and weight gradients);
        # the auxiliary head and element-wise ops are not counted, so these are lower bounds
        train_gf, infer_gf = 3 * 2 * macs * tr / 1e9, 2 * macs * inf / 1e9
        print(f"{label}: matmul peak {peak:.1f} GFLOP/s; training reaches {train_gf:.1f} "
              f"({100 * train_gf / peak:.0f}%), inference {infer_gf:.1f} "
              f"({100 * infer_gf / peak:.0f}%)")


if __name__ == "__main__":
    main()
