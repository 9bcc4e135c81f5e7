"""Compiled steps (``--compile``): the switch, what it compiles, and that it changes nothing
but speed and float rounding.

Most tests trace the compiled graphs with torch.compile's ``aot_eager`` backend
(``NASP_COMPILE_BACKEND``): dynamo and AOTAutograd capture exactly the graphs inductor would
get, forward and backward, with the same guards and recompilations, in seconds. Inductor's own
code generation (minutes of C++ compilation at these sizes) is exercised by two tests on one op
and on the smallest evaluation network. The rest of the suite runs eagerly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nasp
import nasp.compiled as compiled
from helpers import context, make_strategy, tiny_batch, tiny_cfg, tiny_net, use_synthetic_task
from nasp.cli import main
from nasp.compiled import Compiler, attach, resolve_compile
from nasp.errors import NaspError
from nasp.loops.search import run_search

SRC = str(Path(nasp.__file__).resolve().parents[1])
TINY = ["--max-train-samples", "128", "--channels", "4", "--layers", "3", "--batch-size", "16",
        "--max-steps-per-epoch", "2", "--epochs", "2", "--quiet", "--device", "cpu"]


@pytest.fixture
def traced(monkeypatch):
    """Compiled pieces traced with aot_eager; dynamo's caches and counters start empty."""
    import torch._dynamo

    monkeypatch.setenv("NASP_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield torch._dynamo.utils.counters
    torch._dynamo.reset()


OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")


def tiny_space():
    """Four op kinds (a pool + BN, the identity / factorized reduce, a separable and a dilated
    convolution): every way an op is compiled, in fewer graphs than a full space."""
    from nasp.spaces.cnn import cnn_space

    return cnn_space("compile-test", OPS, OPS, "ops of every compiled kind")


@pytest.fixture
def space(monkeypatch):
    from nasp.spaces import SPACES

    monkeypatch.setitem(SPACES._items, "compile-test", tiny_space())
    return "compile-test"


@pytest.fixture
def no_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    monkeypatch.setattr(compiled, "_SAID", set())


# --- the switch ----------------------------------------------------------------------------------

def test_compile_on_without_a_cpp_compiler_is_one_clear_error(tmp_path, capsys, no_compiler):
    out = tmp_path / "run"
    assert main(["search", "--compile", "on", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --compile on: ")
    assert "C++ compiler" in err and "--compile off" in err
    assert not out.exists()  # refused before anything was written


def test_an_unknown_compile_mode_is_one_clear_error(capsys):
    for argv in (["search", "--compile", "yes"], ["train", "--compile", "fast"],
                 ["train", "--task", "lm", "--compile", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "use --compile off, on, auto" in err, err


def test_compile_auto_without_a_compiler_runs_eagerly_and_says_so_once(capsys, no_compiler):
    assert resolve_compile("auto", "cpu") == "off"
    assert resolve_compile("auto", "cpu") == "off"
    err = capsys.readouterr().err
    assert err.count("--compile auto runs eagerly") == 1 and "C++ compiler" in err


def test_compile_auto_runs_eagerly_on_the_cpu_and_compiles_on_cuda(monkeypatch, capsys):
    monkeypatch.setattr(compiled, "c_compiler", lambda: "/usr/bin/c++")
    monkeypatch.setattr(compiled, "_SAID", set())
    assert resolve_compile("auto", "cpu") == "off"  # measured no faster there (README)
    assert resolve_compile("auto", "cpu") == "off"
    assert capsys.readouterr().err.count("compiled steps measured no faster on the CPU") == 1
    monkeypatch.setattr(compiled, "unsupported", lambda device: None)  # CUDA with Triton
    assert resolve_compile("auto", "cuda") == "on"
    assert resolve_compile("on", "cpu") == "on"
    assert resolve_compile("off", "cuda") == "off"
    with pytest.raises(NaspError, match="--compile off, on or auto"):
        resolve_compile("yes", "cpu")


def test_runs_record_their_mode_and_a_resume_in_the_other_mode_is_refused_by_name(
        tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--compile", "auto", "--out", str(out), *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["compile"] == "off"  # CPU: eager
    assert json.loads((out / "result.json").read_text())["compile"] == "off"
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--compile", "on"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --compile cannot change when resuming") and \
        err.count("\n") == 1
    # (a compiled run refusing an eager resume: test_a_compiled_search_killed_by_sigkill...)


# --- what is compiled, and that it agrees with the eager steps ----------------------------------

def _arch_gradient(name: str, compiled_steps: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    from nasp.supernet.cnn import SearchCNN

    torch.manual_seed(0)
    net = SearchCNN(tiny_space(), 1, 5, channels=4, layers=3).to(torch.float64)
    if compiled_steps:
        attach(net, Compiler())
    options = {"init_noise": 0.2} if name == "nasp" else {}
    s = make_strategy(name, space=tiny_space(), seed=1, **options)
    ctx = context(net)
    batch = tiny_batch()
    if name == "nasp":
        grads = s.arch_gradient(ctx, batch)
    else:
        alpha = s.arch.leaves()
        grads = list(torch.autograd.grad(s._val_loss(ctx, batch, alpha), list(alpha.values())))
        grads += s.unrolled_gradient(ctx, batch, tiny_batch(seed=2), alpha)  # darts2
    return grads, ctx.loss(batch, s.weighting()).detach()


@pytest.mark.parametrize("name", ["nasp", "darts"])
def test_compiled_and_eager_architecture_gradients_and_losses_agree(name, traced):
    """NASP's lean gradient (probes included), DARTS's first- and second-order gradients."""
    eager, eager_loss = _arch_gradient(name, False)
    assert traced["stats"]["unique_graphs"] == 0
    comp, comp_loss = _arch_gradient(name, True)
    assert traced["stats"]["unique_graphs"] > 0  # the compiled pieces did run
    for a, b in zip(eager, comp, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(comp_loss, eager_loss, rtol=1e-12, atol=0)


def test_a_plain_module_compiles_through_the_same_forward_and_probe_calls(traced):
    """The hooks a user's own candidate modules get: forward(module, x), probe(module, x, g)."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Tanh())
    x, g = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    c = Compiler()
    torch.testing.assert_close(c.forward(module, x), module(x))
    with torch.no_grad():
        torch.testing.assert_close(c.probe(module, x, g), (module(x) * g).sum())
    # a network with a compiler attached still pickles (it compiles afresh where it is loaded)
    import pickle

    attach(module, c)
    copy = pickle.loads(pickle.dumps(module))
    torch.testing.assert_close(copy(x), module(x))


def test_a_search_whose_architecture_changes_many_times_recompiles_nothing(
        monkeypatch, space, traced):
    """Every compiled function (op kind, shape, mode) is compiled once, the first time it is
    met; a new Ā reuses the graphs: dynamo compiles one graph per function, never a second,
    and the later epochs, while Ā keeps changing, add at most a few first-time functions.
    The compiled search agrees with the eager one."""
    use_synthetic_task(monkeypatch)
    seen: dict[str, list] = {"graphs": [], "functions": [], "selections": []}

    def at_epoch_end(epoch, record):
        seen["graphs"].append(traced["stats"]["unique_graphs"])
        seen["functions"].append(compiler[0].graphs() if compiler else 0)
        seen["selections"].append(json.dumps(strategies[-1].selection))

    import nasp.loops.search as search_loop

    strategies, compiler = [], []
    build, attach_ = search_loop.build_strategy, search_loop.attach
    monkeypatch.setattr(search_loop, "build_strategy",
                        lambda *a: strategies.append(build(*a)) or strategies[-1])
    monkeypatch.setattr(search_loop, "attach",
                        lambda model, c: compiler.append(c) or attach_(model, c))
    runs = {}
    for mode in ("off", "on"):
        seen = {k: [] for k in seen}
        cfg = tiny_cfg(strategy="nasp", space=space, epochs=5, arch_lr=0.3, compile=mode)
        runs[mode] = run_search(cfg, progress=False, on_epoch_end=at_epoch_end)
    changes = sum(a != b for a, b in zip(seen["selections"], seen["selections"][1:]))
    assert changes >= 3, seen["selections"]  # Ā changed after most epochs
    assert seen["graphs"] == seen["functions"]  # no function was ever compiled twice
    assert seen["graphs"][-1] - seen["graphs"][0] <= seen["graphs"][0] // 4, seen["graphs"]
    eager, comp = runs["off"], runs["on"]
    assert comp.result["compile"] == "on" and eager.result["compile"] == "off"
    assert comp.genotype == eager.genotype
    for a, b in zip(eager.metrics, comp.metrics, strict=True):
        for key in ("train_loss", "valid_loss", "valid_acc"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key


def test_compiled_training_agrees_with_eager_and_compiles_its_network_once(tmp_path, traced):
    import torch._dynamo

    options = dict(genotype="DARTS_V2", max_train_samples=128, channels=4, layers=3,
                   batch_size=16, max_steps_per_epoch=3, epochs=3, device="cpu", cutout=0,
                   drop_path_prob=0.0, progress=False)
    eager = nasp.train(out=str(tmp_path / "eager"), **options)
    comp = nasp.train(out=str(tmp_path / "compiled"), compile="on", **options)
    assert comp["compile"] == "on" and eager["compile"] == "off"
    assert comp["test_acc"] == pytest.approx(eager["test_acc"], abs=1e-9)
    # rounding: under 1e-5 relative on torch 2.13, 1.2e-4 on 2.11 (the GPU machines'
    # release), whose decompositions of the training graph round differently over 9 SGD steps
    assert comp["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-3)
    # with drop-path, whose probability rises every epoch: one training graph and one per
    # evaluation batch shape (16 validation images, test batches of 256 and 208), not one
    # per epoch
    torch._dynamo.reset()
    traced.clear()
    nasp.train(out=str(tmp_path / "drop"), compile="on", **{**options, "epochs": 4,
                                                             "drop_path_prob": 0.3})
    assert 0 < traced["stats"]["unique_graphs"] <= 4, dict(traced["stats"])


def test_compiled_language_model_training_agrees_with_eager(tmp_path, traced):
    from test_rnn_data import write_corpus

    root = write_corpus(tmp_path / "ptb", lines=150)
    results = {}
    for mode in ("off", "on"):
        out = tmp_path / mode
        assert main(["train", "--task", "lm", "--data", "ptb", "--data-root", str(root),
                     "--preset", "quick", "--emsize", "8", "--nhid", "8", "--batch-size", "4",
                     "--eval-batch-size", "4", "--test-batch-size", "2", "--bptt", "6",
                     "--epochs", "2", "--max-steps-per-epoch", "4", "--device", "cpu",
                     "--compile", mode, "--out", str(out), "--quiet"]) == 0
        results[mode] = json.loads((out / "result.json").read_text())
    assert results["on"]["compile"] == "on" and results["off"]["compile"] == "off"
    assert results["on"]["test_loss"] == pytest.approx(results["off"]["test_loss"], rel=1e-5)
    assert traced["stats"]["unique_graphs"] > 0


def test_compiled_language_model_search_agrees_with_eager(tmp_path, traced):
    from nasp.configs import SearchConfig, resolve
    from test_rnn_data import write_corpus

    root = write_corpus(tmp_path / "ptb", lines=150)
    opts = dict(task="lm", strategy="nasp", space="rnn", preset="quick", data="ptb",
                data_root=str(root), emsize=8, nhid=8, batch_size=4, eval_batch_size=4, bptt=5,
                epochs=2, max_steps_per_epoch=3, device="cpu")
    runs = {mode: run_search(resolve(SearchConfig, {**opts, "compile": mode}), progress=False)
            for mode in ("off", "on")}
    assert traced["stats"]["unique_graphs"] > 0
    assert runs["on"].genotype == runs["off"].genotype
    for a, b in zip(runs["off"].metrics, runs["on"].metrics, strict=True):
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-5)


# --- inductor itself, on the smallest pieces -----------------------------------------------------

def test_inductor_compiled_op_probe_and_gradients_agree_with_eager():
    import torch._dynamo

    from nasp.ops import make_op
    from nasp.supernet.freeze import batch_norms, frozen_batch_stats

    torch._dynamo.reset()
    torch.manual_seed(0)
    op = make_op("sep_conv_3x3", 4, 1, False)
    x = torch.randn(4, 4, 6, 6, requires_grad=True)
    g = torch.randn(4, 4, 6, 6)
    c = Compiler()
    with frozen_batch_stats(batch_norms(op)):
        y_eager, y_comp = op(x), c.forward(op, x)
        torch.testing.assert_close(y_comp, y_eager, rtol=1e-4, atol=1e-5)
        params = list(op.parameters())
        ge = torch.autograd.grad((y_eager * g).sum(), [x, *params])
        gc = torch.autograd.grad((y_comp * g).sum(), [x, *params])
        for a, b in zip(ge, gc, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            probe = c.probe(op, torch.relu(x), g, from_relu=True)
            torch.testing.assert_close(probe, (op(x) * g).sum(), rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


# --- kill -9 ----------------------------------------------------------------------------------

_SCRIPT = """
import os, signal, sys
sys.path.insert(0, TESTS)
import test_compile
from helpers import SyntheticTask, tiny_cfg
import nasp
import nasp.loops.search as search_loop
from nasp.spaces import SPACES
SPACES.register("compile-test", test_compile.tiny_space())
search_loop.build_task = lambda cfg, device, dist=None: SyntheticTask(cfg, device, dist)
out = sys.argv[1]
if sys.argv[2] == "kill":
    def die(epoch, record):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after the first checkpoint
    search_loop.run_search(tiny_cfg(out=out, **OPTIONS), out, progress=False, on_epoch_end=die)
else:
    try:
        nasp.resume(out, progress=False, compile="off")
    except nasp.NaspError as e:
        print("refused:", e)
    nasp.resume(out, progress=False)
"""
KILL_OPTIONS = dict(strategy="nasp", space="compile-test", epochs=3, arch_lr=0.3, compile="on")


def test_a_compiled_search_killed_by_sigkill_resumes_exactly(tmp_path, monkeypatch, space,
                                                             traced):
    use_synthetic_task(monkeypatch)
    straight = tmp_path / "straight"
    run_search(tiny_cfg(out=str(straight), **KILL_OPTIONS), straight, progress=False)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1",
           "NASP_COMPILE_BACKEND": "aot_eager"}
    script = _SCRIPT.replace("OPTIONS", repr(KILL_OPTIONS)).replace(
        "TESTS", repr(str(Path(__file__).parent)))
    cut = tmp_path / "cut"

    def run(step: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, str(cut), step], env=env,
                              capture_output=True, text=True, timeout=600)

    proc = run("kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 1
    proc = run("resume")
    assert proc.returncode == 0, proc.stderr
    assert "refused: --compile cannot change when resuming" in proc.stdout  # eager refused
    assert (cut / "arch.jsonl").read_bytes() == (straight / "arch.jsonl").read_bytes()
    assert (cut / "genotype.json").read_bytes() == (straight / "genotype.json").read_bytes()
    for a, b in zip(*(f.read_text().splitlines() for f in (straight / "metrics.jsonl",
                                                           cut / "metrics.jsonl")),
                    strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["train_loss"] == b["train_loss"] and a["valid_acc"] == b["valid_acc"]


# --- CUDA --------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_compiled_steps_on_cuda_agree_with_eager(tmp_path):
    """A compiled search step (inductor's Triton kernels) and a compiled evaluation network
    (CUDA graphs, reduce-overhead) on the GPU, against the same eager steps."""
    net = tiny_net(dtype=torch.float32).cuda()
    s = make_strategy("nasp", seed=1, init_noise=0.2, device=torch.device("cuda"),
                      dtype=torch.float32)
    ctx = context(net)
    batch = tuple(t.cuda() for t in tiny_batch(dtype=torch.float32))
    eager = s.arch_gradient(ctx, batch)
    attach(net, Compiler(compiled.compile_mode_for("cuda", "search")))
    comp = s.arch_gradient(ctx, batch)
    for a, b in zip(eager, comp, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    options = dict(genotype="DARTS_V2", max_train_samples=256, channels=8, layers=5,
                   batch_size=32, max_steps_per_epoch=4, epochs=2, device="cuda", cutout=0,
                   drop_path_prob=0.0, amp=False, progress=False)
    eager_run = nasp.train(out=str(tmp_path / "eager"), **options)
    comp_run = nasp.train(out=str(tmp_path / "compiled"), compile="on", **options)
    assert comp_run["test_loss"] == pytest.approx(eager_run["test_loss"], rel=1e-3)



def test_a_user_models_search_compiles_its_candidates_once_and_agrees_with_eager(
        traced, monkeypatch):
    """``compile=on`` for a model with nasp.Choice / nasp.InputChoice: each candidate kind is
    compiled once (its forward, its probe), never again while Ā changes; results agree."""
    import nasp.loops.search as search_loop
    import own_models

    compilers = []
    attach_ = search_loop.attach
    monkeypatch.setattr(search_loop, "attach",
                        lambda model, c: compilers.append(c) or attach_(model, c))
    runs = {}
    for mode in ("off", "on"):
        torch.manual_seed(0)
        train, valid = own_models.data()
        res = nasp.search(model=own_models.Small(), train=train, valid=valid,
                          loss=own_models.loss, strategy="nasp", epochs=4, seed=0, arch_lr=0.3,
                          compile=mode, out=False, progress=False, device="cpu")
        runs[mode] = (res, traced["stats"]["unique_graphs"])
    (eager, _), (comp, graphs) = runs["off"], runs["on"]
    assert graphs > 0 and comp.result["compile"] == "on"
    assert graphs == compilers[0].graphs()  # no function was compiled twice
    assert comp.arch == eager.arch
    for a, b in zip(eager.metrics, comp.metrics, strict=True):
        for key in ("train_loss", "valid_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
