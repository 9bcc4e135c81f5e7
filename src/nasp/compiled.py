"""Compiled steps (``--compile``): torch.compile at a granularity that survives a changing Ā.

NASP changes which op of an edge runs, and which are probed, whenever Ā changes; a network
compiled as a whole would be recompiled for every new architecture. What is compiled here has
static shapes and a fixed set of calls instead:

* each op's forward (``Compiler.forward``; the selected ops of NASP's steps, a search cell's
  preprocessing, the stem), with its backward through AOTAutograd;
* each op kind's probe (``Compiler.probe``): ⟨∂L/∂s, op(x)⟩ without a graph, the ReLU, the
  convolutions, the batch statistics, the normalisation and the inner product in a few fused
  kernels;
* DARTS's mixed edge as a whole (``Compiler.mixed``): every op of the edge and the weighted
  sum;
* in ``nasp train``, the evaluation network as a whole (its architecture is fixed).

A compiled function is a plain function of (module, tensors). Dynamo inlines the module, so
its parameters are graph inputs and its guards check the module's type and configuration, not
its identity: every op instance of one kind and input shape shares one graph, whichever edge
it sits on. Each (kind, shape, dtype, grad mode) gets its own copy of the function's code
object, hence its own dynamo cache: guard checks stay short, and a search never comes near
dynamo's per-function recompilation limit. A search compiles every kind at every resolution of
the network in its first steps and nothing afterwards (tested with dynamo's counters).

Where compiled code is kept: inductor writes what it generates (C++ or Triton sources, shared
libraries, the FX graph and AOTAutograd caches) to ``TORCHINDUCTOR_CACHE_DIR``, by default
``/tmp/torchinductor_<user>``, and reuses it in every later process on the machine; a warm
cache skips code generation and C++ compilation (dynamo still traces each graph, about a
second per graph). Removing the folder clears it (``rm -rf /tmp/torchinductor_$USER``).
"""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nasp.errors import NaspError

MODES = ("off", "on", "auto")

# ``auto`` compiles on CUDA only. Measured on a quiet 2-core CPU (paper search size, one
# thread, warm cache; README "Compiled steps"): a compiled NASP iteration 1.02x the eager one,
# DARTS 0.93x, DARTS-2nd 1.24x, the evaluation network's training slower too; no CPU run pays
# back a compilation there. A fixed rule, not a start-up measurement, so two runs of one config
# compute the same numbers.

_SAID: set[str] = set()


def say_once(message: str) -> None:
    """One line on stderr, once per process (``auto`` explaining why it runs eagerly)."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"note: {message}", file=sys.stderr)


def c_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU (``CXX``, else c++/g++/clang++), or None."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def unsupported(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or None when it can."""
    try:
        import torch._dynamo
        supported = torch._dynamo.is_dynamo_supported()
    except Exception:  # a torch build without dynamo
        supported = False
    if not supported:
        return (f"torch.compile does not support this Python ({sys.version.split()[0]}) or "
                "platform")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "inductor needs Triton on CUDA and it is not installed"
        return None
    if device.type != "cpu":
        return f"compiled steps are built for cpu and cuda, not {device.type}"
    if c_compiler() is None:
        return "inductor needs a C++ compiler on the CPU and none was found (CXX, c++, g++)"
    return None


def resolve_compile(value: str, device: torch.device | str) -> str:
    """``on`` or ``off`` for a run: ``on`` where the platform cannot compile is a NaspError.

    ``auto`` compiles on CUDA (launch-bound small kernels, CUDA graphs) and runs eagerly on the
    CPU, where compiled steps measured no faster (above), saying so once. The result is
    recorded in the run's config, so a resume computes as the run began."""
    if value not in MODES:
        raise NaspError(f"unknown compile mode {value!r}", "use --compile off, on or auto")
    if value == "off":
        return "off"
    device = torch.device(device)
    why = unsupported(device)
    if value == "on":
        if why:
            raise NaspError(f"--compile on: {why}", "install one, or use --compile off (auto "
                            "compiles only where it can)")
        return "on"
    if why:
        say_once(f"--compile auto runs eagerly: {why}")
        return "off"
    if device.type == "cpu":
        say_once("--compile auto runs eagerly: compiled steps measured no faster on the CPU "
                 "(--compile on forces them)")
        return "off"
    return "on"


def compile_mode_for(device: torch.device | str, workflow: str) -> str | None:
    """torch.compile's mode for ``workflow`` ("search" or "train") on ``device``.

    CUDA graphs (``reduce-overhead``) replay recorded kernels at fixed addresses, parameters
    included, so they fit a piece that always runs the same module: ``nasp train``'s network.
    A search's compiled pieces are shared by every op of a kind (different parameters on every
    edge), and which pieces run changes with Ā: CUDA graph trees would re-record them whenever
    another instance or another path comes along, so searches use inductor's kernels without
    CUDA graphs. On the CPU there are no CUDA graphs (default mode)."""
    if torch.device(device).type == "cuda" and workflow == "train":
        return "reduce-overhead"
    return None


def mark_step(model: nn.Module) -> None:
    """Tell CUDA graph trees that a training iteration begins (a no-op unless ``model`` is a
    compiled network on CUDA): tensors of the previous iteration may then be reused."""
    if getattr(model, "_orig_mod", None) is not None and torch.cuda.is_available():
        torch.compiler.cudagraph_mark_step_begin()


def _kind(module: nn.Module) -> tuple:
    """What a compiled graph of ``module`` depends on besides its inputs: the classes and the
    configuration of its layers and the shapes of its parameters and buffers (cached on the
    instance; the parameters themselves are graph inputs)."""
    kind = module.__dict__.get("_compile_kind")
    if kind is None:
        layers = tuple((type(m).__name__, *(str(getattr(m, a, "")) for a in
                                             ("kernel_size", "stride", "padding", "dilation",
                                              "groups", "affine", "eps")))
                       for m in module.modules())
        shapes = tuple(tuple(t.shape) for t in (*module.parameters(), *module.buffers()))
        kind = module.__dict__["_compile_kind"] = (layers, shapes)
    return kind


def _state(module: nn.Module) -> tuple:
    """What a graph depends on of a module that changes between calls: whether its
    parameters require grad (NASP holds them constant in the architecture step) and whether
    its batch norms update running statistics (frozen in every architecture step)."""
    parts = module.__dict__.get("_compile_parts")
    if parts is None:
        params = [p for p in module.parameters()][:1]
        bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        parts = module.__dict__["_compile_parts"] = (params, bns)
    params, bns = parts
    return (tuple(p.requires_grad for p in params),
            tuple(m.track_running_stats for m in bns))


def _signature(x: Any) -> Any:
    """What a graph depends on of one argument: a tensor's shape, layout, dtype, device and
    whether it requires grad; a tuple's items; other values as they are (None, numbers)."""
    if isinstance(x, torch.Tensor):
        return (tuple(x.shape), x.stride(), x.dtype, x.device, x.requires_grad)
    if isinstance(x, tuple | list):
        return tuple(_signature(v) for v in x)
    return x


def _run_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _run_from_relu(module: nn.Module, r: torch.Tensor) -> torch.Tensor:
    return module.from_relu(r)


def _run_probe(module: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.sum(module(x) * g)


def _run_probe_from_relu(module: nn.Module, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.sum(module.from_relu(r) * g)


def _run_mixed(mixed: nn.Module, x: torch.Tensor, weights: torch.Tensor | None,
               codes: tuple[int, ...]) -> torch.Tensor | None:
    return mixed.forward_eager(x, weights, codes)


def _copy(fn: Callable, name: str) -> Callable:
    """``fn`` with its own code object: dynamo keeps one cache per code object."""
    code = fn.__code__.replace(co_name=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def backend() -> str:
    """torch.compile's backend: inductor, unless ``NASP_COMPILE_BACKEND`` names another (for
    tests and debugging: ``aot_eager`` traces the same graphs, forward and backward, and runs
    them without generating code, in seconds instead of minutes)."""
    return os.environ.get("NASP_COMPILE_BACKEND") or "inductor"


class Compiler:
    """Compiled calls of modules, one graph per (function, module kind, arguments' signature,
    mode, grad mode).

    ``mode`` is torch.compile's (``"reduce-overhead"`` records CUDA graphs; ``None`` is the
    default). Attach it to a network with ``attach``; the network's modules then route their
    steps through it. A user's own candidate modules can use the same calls: ``forward(module,
    x)`` and ``probe(module, x, g)`` (⟨g, module(x)⟩ without a graph), or ``call(fn, module,
    ...)`` for any function of a module and tensors."""

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode
        self._fns: dict[tuple, Callable] = {}

    def __deepcopy__(self, memo: dict) -> Compiler:
        return self  # a copied network shares the compiled graphs

    def __reduce__(self) -> tuple:
        return (Compiler, (self.mode,))  # a pickled network compiles afresh where it is loaded

    def call(self, fn: Callable, module: nn.Module, *args: Any) -> Any:
        """``fn(module, *args)``, compiled once per (fn, module kind, signature of args)."""
        key = (fn.__name__, _kind(module), _state(module), module.training,
               torch.is_grad_enabled(), _signature(args))
        compiled = self._fns.get(key)
        if compiled is None:
            name = f"{fn.__name__}_{len(self._fns)}"
            options: dict[str, Any] = {"dynamic": False, "backend": backend()}
            if self.mode is not None and options["backend"] == "inductor":
                options["mode"] = self.mode
            compiled = self._fns[key] = torch.compile(_copy(fn, name), **options)
        return compiled(module, *args)

    def forward(self, module: nn.Module, x: torch.Tensor, from_relu: bool = False
                ) -> torch.Tensor:
        """``module(x)`` (``module.from_relu(x)`` with ``from_relu``), compiled.

        Except on the CPU when the module's parameters are held constant (NASP's architecture
        step: only the input's gradient is wanted): there inductor's graphs measured slower
        than torch's kernels (paper size, one thread: the architecture step's discrete pass
        0.85 s compiled against 0.62 s eager), so the op runs eagerly."""
        if x.device.type == "cpu" and not any(_state(module)[0]):
            return module.from_relu(x) if from_relu else module(x)
        return self.call(_run_from_relu if from_relu else _run_forward, module, x)

    def probe(self, module: nn.Module, x: torch.Tensor, g: torch.Tensor,
              from_relu: bool = False) -> torch.Tensor:
        """⟨g, module(x)⟩ (of ``module.from_relu(x)`` with ``from_relu``), compiled; call it
        without a graph (NASP's probes run inside backward, under no_grad)."""
        return self.call(_run_probe_from_relu if from_relu else _run_probe, module, x, g)

    def mixed(self, mixed: nn.Module, x: torch.Tensor, weights: torch.Tensor | None,
              codes: tuple[int, ...]) -> torch.Tensor | None:
        """A mixed edge's ``Σ_k w_k op_k(x)`` over its RUN ops, compiled as one graph."""
        return self.call(_run_mixed, mixed, x, weights, codes)

    def graphs(self) -> int:
        """How many compiled functions exist (one per key; each holds one or a few graphs)."""
        return len(self._fns)


def compile_network(model: nn.Module, mode: str | None = None) -> nn.Module:
    """A network whose architecture is fixed (``nasp train``), compiled as a whole; it shares
    ``model``'s parameters and buffers (checkpoints keep using ``model``)."""
    options: dict[str, Any] = {"dynamic": False, "backend": backend()}
    if mode is not None and options["backend"] == "inductor":
        options["mode"] = mode
    return torch.compile(model, **options)


COMPILER_ATTR = "_compiler"
_NONE: dict[str, Any] = {}


def attach(model: nn.Module, compiler: Compiler | None) -> None:
    """Route the steps of ``model``'s modules through ``compiler`` (every module that asks
    ``compiler_of(self)``: mixed edges, cells, probed ops); ``None`` detaches (eager again)."""
    for m in model.modules():
        if compiler is None:
            m.__dict__.pop(COMPILER_ATTR, None)
        else:
            m.__dict__[COMPILER_ATTR] = compiler


def compiler_of(module: nn.Module) -> Compiler | None:
    """The compiler attached to ``module``, if any (a dict lookup: called on every step)."""
    return getattr(module, "__dict__", _NONE).get(COMPILER_ATTR)  # a probe wrapper has none


def dynamo_counters() -> dict[str, Any]:
    """dynamo's counters (frames compiled, recompilations), for tests and benchmarks."""
    from torch._dynamo.utils import counters

    return {k: dict(v) for k, v in counters.items()}
