"""A user's own model with ``nasp.Choice`` / ``nasp.InputChoice``: NASP's architecture gradient,
single-path weight steps, the shared mechanism with the built-in cells, ``fix`` and labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nasp
from helpers import make_strategy
from nasp.errors import NaspError
from nasp.spaces import get_space
from nasp.strategies import ArchContext
from nasp.supernet.choices import Choice, InputChoice, attach, use
from nasp.supernet.cnn import SearchCell
from nasp.supernet.weighting import CellWeighting

F64 = torch.float64


def conv(cin: int, cout: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout, affine=False), nn.ReLU())


class Tiny(nn.Module):
    """Two choices of a block and a choice of two of three earlier outputs."""

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = Choice({"k3": conv(4, 4, 3), "k5": conv(4, 4, 5), "id": nn.Identity()})
        self.b = Choice([conv(4, 4, 1), conv(4, 4, 3)])
        self.pick = InputChoice(3, k=2, reduction=reduction)
        self.head = nn.Linear(8 if reduction == "concat" else 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = torch.relu(self.stem(x))
        y = self.a(x0)
        z = self.b(y)
        return self.head(self.pick([x0, y, z]).mean((2, 3)))

    def dense(self, x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """The same network as an explicit mixture: every candidate and input weighted."""
        x0 = torch.relu(self.stem(x))
        y = sum(w["a"][0, k] * m(x0) for k, m in enumerate(self.a.candidates.values()))
        z = sum(w["b"][0, k] * m(y) for k, m in enumerate(self.b.candidates.values()))
        h = sum(w["pick"][j, 0] * s for j, s in enumerate([x0, y, z]))
        return self.head(h.mean((2, 3)))


def batch(n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g, dtype=F64), torch.randint(0, 3, (n,),
                                                                           generator=g)


def model_ctx(model: nn.Module, space) -> ArchContext:
    def loss(b, weighting):
        with space.state.bound(weighting):
            return F.cross_entropy(model(b[0]), b[1])

    params = list(model.parameters())
    return ArchContext(loss, params, torch.optim.SGD(params, lr=0.1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nasp_arch_gradient_on_a_user_model_is_the_dense_mixtures_gradient_at_A_bar(seed):
    torch.manual_seed(seed)
    model = Tiny().to(F64)
    space = attach(model)
    s = make_strategy("nasp", space, seed=seed, init_noise=0.4)
    b = batch(seed=seed)
    grads = dict(zip(s.A_bar, s.arch_gradient(model_ctx(model, space), b), strict=True))
    # the reference: autograd through the explicit mixture, every candidate run with a graph
    leaves = {k: v.clone().requires_grad_(True) for k, v in s.A_bar.items()}
    ref = torch.autograd.grad(F.cross_entropy(model.dense(b[0], leaves), b[1]),
                              list(leaves.values()))
    for (label, g), r in zip(grads.items(), ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12, msg=label)
    # and some probed candidate or input really has a gradient of its own
    assert any(float(g[s.A_bar[k] == 0].abs().sum()) > 0 for k, g in grads.items())


def _counting(module: nn.Module, counts: dict, name: str) -> None:
    counts[name] = 0

    def hook(*_):
        counts[name] += 1

    module.register_full_backward_hook(hook)


def test_no_backward_through_unselected_candidates_and_their_weights_are_untouched(tmp_path):
    """The architecture step probes unselected candidates without a graph; the weight step
    runs only the chosen ones: SGD with momentum and weight decay leaves every weight of the
    others, and their optimizer state, exactly as they were."""
    torch.manual_seed(0)
    model = Tiny()
    counts: dict[str, int] = {}
    for label in ("a", "b"):
        for name, m in getattr(model, label).candidates.items():
            if list(m.parameters()):
                _counting(m, counts, f"{label}.{name}")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(64, 1, 6, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    data = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    res = nasp.search(model=model, train=data[:2], valid=data[2:], strategy="nasp",
                      loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]), epochs=2, seed=0,
                      arch_lr=0.0, weight_decay=0.1, momentum=0.9, out=str(tmp_path / "r"),
                      progress=False, device="cpu")
    arch = res.arch  # arch_lr 0: the first Ā holds throughout
    chosen = {f"a.{arch['a']}", f"b.{arch['b']}"}
    for name, n in counts.items():  # a chosen one may feed an input left out, so not "=="
        assert n == 0 or name in chosen, (name, n, counts)
    assert sum(counts.values()) > 0
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    params = dict(model.named_parameters())
    order = list(params)
    with_state = {order[i] for i in state["optimizer"]["state"]}
    for key, value in model.state_dict().items():
        label, _, rest = key.partition(".candidates.")
        if rest and f"{label}.{rest.split('.')[0]}" not in chosen:
            assert torch.equal(value, before[key]), key  # weights and BN statistics
            assert key not in with_state  # no momentum buffer
        elif not rest and key in params:  # the backbone trains
            assert key in with_state
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


class ChoiceCell(nn.Module):
    """nasp's built-in search cell written with Choice / InputChoice over the same modules
    (so the same weights): each edge a Choice of the cell's ops, each node an InputChoice(k=2)
    of its incoming edges (``nodes=False``: a plain sum, DARTS's relaxation)."""

    def __init__(self, cell: SearchCell, nodes: bool = True) -> None:
        super().__init__()
        spec = cell.spec
        self.cell, self.spec = cell, spec
        self.choices = nn.ModuleList(
            Choice({op: cell.edges[e].ops[k] for k, op in enumerate(spec.ops)}, label=f"e{e}")
            for e in range(spec.num_edges))
        self.nodes = nn.ModuleList(InputChoice(len(r), 2, label=f"n{i}")
                                   for i, r in enumerate(spec.node_edges)) if nodes else None

    def forward(self, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        states = [self.cell.preprocess0.from_relu(r0), self.cell.preprocess1.from_relu(r1)]
        for i, edges in enumerate(self.spec.node_edges):
            ys = [self.choices[e](states[self.spec.edges[e][1]]) for e in edges]
            states.append(self.nodes[i](ys) if self.nodes is not None else sum(ys))
        return torch.cat([states[n] for n in self.spec.concat], dim=1)


def _cell_and_inputs(seed: int = 0):
    torch.manual_seed(seed)
    spec = get_space("nasp-7").cells["normal"]
    cell = SearchCell(spec, 4, 4, 4, reduction=False, reduction_prev=False).to(F64)
    g = torch.Generator().manual_seed(seed + 10)
    r0, r1 = (torch.randn(4, 4, 6, 6, generator=g, dtype=F64).relu() for _ in range(2))
    target = torch.randn(4, 16, 6, 6, generator=g, dtype=F64)
    return cell, spec, r0, r1, target


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cell_written_with_choices_gets_nasps_builtin_gradients(seed):
    """Same weights, same batch: a NASP step on the built-in cell and on the cell written with
    Choice / InputChoice selects the same ops and edges, computes the same output, and its
    gradients are the built-in ones (a kept edge's row exactly; an input's gradient is the
    built-in gradient of the op its Choice holds; a left-out input's Choice gets none)."""
    cell, spec, r0, r1, target = _cell_and_inputs(seed)
    mine = ChoiceCell(cell)
    space = attach(mine)
    builtin = make_strategy("nasp", get_space("nasp-7"), seed=seed, init_noise=0.4)
    own = make_strategy("nasp", space, seed=seed)
    A = builtin.arch["normal"]
    with torch.no_grad():  # the same continuous A, as one row per edge and a strength per input
        for e in range(spec.num_edges):
            own.arch[f"e{e}"].copy_(A[e:e + 1])
        for i, edges in enumerate(spec.node_edges):
            own.arch[f"n{i}"].zero_()
            own.arch[f"n{i}"][:, 0] = A[list(edges)].max(dim=1).values
    own.restored()
    sel = builtin.selection["normal"]
    for i, edges in enumerate(spec.node_edges):
        assert own.selection[f"n{i}"] == tuple(0 if sel[e] >= 0 else -1 for e in edges)
    for e in range(spec.num_edges):
        assert int(own.A_bar[f"e{e}"].argmax()) == int(A[e].argmax())

    def loss_builtin(_b, w):
        return ((cell(r0, r1, w["normal"]) - target) ** 2).mean()

    def loss_own(_b, w):
        with space.state.bound(w):
            return ((mine(r0, r1) - target) ** 2).mean()

    params = list(cell.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    g_builtin = builtin.arch_gradient(ArchContext(loss_builtin, params, opt), None)[0]
    g_own = dict(zip(own.A_bar, own.arch_gradient(ArchContext(loss_own, params, opt), None),
                     strict=True))
    with torch.no_grad():
        out_b = cell(r0, r1, builtin.arch_weighting(builtin.A_bar)["normal"])
        with space.state.bound(own.arch_weighting(own.A_bar)):
            out_o = mine(r0, r1)
    assert torch.equal(out_b, out_o)
    for i, edges in enumerate(spec.node_edges):
        for j, e in enumerate(edges):
            row = g_own[f"e{e}"][0]
            if sel[e] >= 0:
                torch.testing.assert_close(row, g_builtin[e], rtol=1e-10, atol=1e-13)
            else:
                assert torch.equal(row, torch.zeros_like(row))
            winner = int(A[e].argmax())
            torch.testing.assert_close(g_own[f"n{i}"][j, 0], g_builtin[e, winner],
                                       rtol=1e-10, atol=1e-13)
            assert float(g_own[f"n{i}"][j, 1]) == 0.0  # the "none" column never matters


def test_a_cell_written_with_choices_gets_darts_builtin_gradients():
    """DARTS's softmax mixture: every edge a Choice over the same ops, nodes plain sums; the
    gradient of every edge's α is the built-in cell's row."""
    cell, spec, r0, r1, target = _cell_and_inputs(3)
    mine = ChoiceCell(cell, nodes=False)
    space = attach(mine)
    builtin = make_strategy("darts", get_space("nasp-7"), seed=3)
    own = make_strategy("darts", space, seed=3)
    with torch.no_grad():
        alpha = torch.randn(spec.num_edges, spec.num_ops, dtype=F64)
        builtin.arch["normal"].copy_(alpha)
        for e in range(spec.num_edges):
            own.arch[f"e{e}"].copy_(alpha[e:e + 1])

    def grads(strategy, run):
        leaves = strategy.arch.leaves()
        loss = ((run(strategy._weighting(leaves)) - target) ** 2).mean()
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True),
                        strict=True))

    g_b = grads(builtin, lambda w: cell(r0, r1, w["normal"]))

    def run_own(w):
        with space.state.bound(w):
            return mine(r0, r1)

    g_o = grads(own, run_own)
    for e in range(spec.num_edges):
        torch.testing.assert_close(g_o[f"e{e}"][0], g_b["normal"][e], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", ["sum", "mean", "concat"])
def test_fix_is_the_search_network_under_its_arch_bit_for_bit(reduction):
    torch.manual_seed(0)
    model = Tiny(reduction)
    x = torch.randn(5, 1, 6, 6)
    space = attach(model)
    with space.state.inspecting(), torch.no_grad():
        model(x)  # let BN statistics differ from their defaults
    model.train()
    with use(model, {"a": "k3", "b": "1", "pick": [0, 2]}):
        model(x)
    model.eval()
    for arch in ({"a": "k3", "b": "1", "pick": [0, 2]}, {"a": "id", "b": "0", "pick": [1, 2]}):
        fixed = nasp.fix(model, arch).eval()
        assert not any(isinstance(m, Choice | InputChoice) for m in fixed.modules())
        with use(model, arch), torch.no_grad():
            want = model(x)
        assert torch.equal(fixed(x), want)
    # the weights are the trained ones, shared by nothing: changing the copy leaves the model
    fixed = nasp.fix(model, {"a": "k3", "b": "1", "pick": [0, 2]})
    assert torch.equal(fixed.a[0].weight, model.a.candidates["k3"][0].weight)
    with torch.no_grad():
        fixed.a[0].weight.add_(1)
    assert not torch.equal(fixed.a[0].weight, model.a.candidates["k3"][0].weight)
    fresh = nasp.fix(model, {"a": "k3", "b": "1", "pick": [0, 2]}, fresh=True)
    assert not torch.equal(fresh.a[0].weight, model.a.candidates["k3"][0].weight)
    assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in fixed.named_parameters()]


class Shared(nn.Module):
    def __init__(self, names_b=("k1", "k3")) -> None:
        super().__init__()
        self.a = Choice({"k1": conv(2, 2, 1), "k3": conv(2, 2, 3)}, label="kernel")
        self.b = Choice({n: conv(2, 2, 1 if n == "k1" else 3) for n in names_b}, label="kernel")
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.a(x)).mean((2, 3)))


def test_choices_with_one_label_share_one_decision():
    torch.manual_seed(0)
    model = Shared().to(F64)
    space = attach(model)
    assert list(space.cells) == ["kernel"]
    s = make_strategy("nasp", space, seed=0, init_noise=0.4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 2, 5, 5, generator=g, dtype=F64), torch.randint(0, 2, (4,), generator=g)
    params = list(model.parameters())
    ctx = ArchContext(lambda b, w: _bound_loss(space, model, w, x, y), params,
                      torch.optim.SGD(params, lr=0.1))
    grad = s.arch_gradient(ctx, None)[0]
    # the decision's gradient is the sum over both places it acts in (dense reference)
    w = s.A_bar["kernel"].clone().requires_grad_(True)
    h = sum(w[0, k] * m(x) for k, m in enumerate(model.a.candidates.values()))
    h = sum(w[0, k] * m(h) for k, m in enumerate(model.b.candidates.values()))
    ref = torch.autograd.grad(F.cross_entropy(model.head(h.mean((2, 3))), y), w)[0]
    torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12)
    # both places run the one chosen candidate
    fixed = nasp.fix(model, {"kernel": "k3"})
    assert fixed.a is model_candidate(fixed, "a") and isinstance(fixed.a, nn.Sequential)
    assert fixed.a[0].kernel_size == fixed.b[0].kernel_size == (3, 3)
    with pytest.raises(NaspError, match="different candidates"):
        attach(Shared(names_b=("k3", "k1")))


def model_candidate(model: nn.Module, name: str) -> nn.Module:
    return getattr(model, name)


def _bound_loss(space, model, w, x, y):
    with space.state.bound(w):
        return F.cross_entropy(model(x), y)


def test_a_mixture_of_inputs_concat_keeps_its_k_heaviest_in_slots():
    """DARTS on concat: the k heaviest inputs hold the slots, in input order; the others spread
    weight/k of themselves over every slot (the extension a NASP probe differentiates)."""
    model = InputChoice(3, 2, reduction="concat", label="c")
    space = attach(model)
    xs = [torch.full((1, 1, 2, 2), float(v)) for v in (1, 10, 100)]
    w = torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.3, 0.7]])
    dense = CellWeighting(w, ((1, 1),) * 3)
    with space.state.bound({"c": dense}):
        out = model(xs)
    spread = 0.2 * 10 / 2
    assert torch.allclose(out[0, 0], torch.full((2, 2), 0.5 * 1 + spread))
    assert torch.allclose(out[0, 1], torch.full((2, 2), 0.3 * 100 + spread))
