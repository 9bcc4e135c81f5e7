"""The recurrent search cell and the LM search task under the real NASP and DARTS strategies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import make_strategy
from nasp.configs import SearchConfig, resolve
from nasp.spaces import get_space
from nasp.strategies import ArchContext
from nasp.supernet.rnn import RNNSearchModel
from nasp.supernet.weighting import RUN, CellWeighting, dense_plan
from nasp.tasks.lm import build_lm_task
from test_rnn_data import write_corpus

V, T, B, H = 40, 6, 3, 8


def tiny_model(space: str = "rnn", dtype=torch.float64, dropouts=(0.3, 0.2, 0.3, 0.1, 0.1)):
    torch.manual_seed(0)
    return RNNSearchModel(get_space(space), V, H, H, *dropouts).to(dtype)


def tokens(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (T, B), generator=g), torch.randint(0, V, (T * B,), generator=g)


def context(model, x, y, h):
    def loss(batch, weighting):
        torch.manual_seed(123)  # the same dropout masks in every pass
        logits, _ = model(x, h, weighting)
        return F.cross_entropy(logits.view(-1, V), y)

    params = list(model.parameters())
    return ArchContext(loss, params, torch.optim.SGD(params, lr=0.5, momentum=0.9,
                                                     weight_decay=1e-4))


def nasp(space: str = "rnn", seed: int = 3):
    # noise 0.3 spreads A so the selection is not everywhere op 0 / the first edge
    return make_strategy("nasp", space, seed=seed, init_noise=0.3)


def test_forward_shapes_and_hidden_state():
    model = tiny_model()
    x, _ = tokens()
    w = make_strategy("darts", "rnn").weighting()
    h0 = model.init_hidden(B)
    logits, h1 = model(x, h0, w)
    assert logits.shape == (T, B, V) and h1.shape == (B, H)
    model.eval()  # no dropout: the hidden state is the only thing carried between calls
    a, ha = model(x, h0, w)
    b, _ = model(x, ha, w)
    assert not torch.allclose(a, b)
    # running two halves with the carried state equals one pass over the whole window
    first, hm = model(x[:3], h0, w)
    second, hz = model(x[3:], hm, w)
    assert torch.allclose(torch.cat([first, second]), a) and torch.allclose(hz, ha)


def test_nasp_abar_selects_one_predecessor_and_activation_per_node():
    strategy = nasp()
    cell = get_space("rnn").cells["recurrent"]
    bar = strategy.A_bar["recurrent"]
    assert bar.shape == (36, 4)
    for edges in cell.node_edges:
        rows = bar[list(edges)]
        assert rows.sum() == 1 and rows.max() == 1  # one (predecessor, activation) per node
    pairs = strategy.genotype().recurrent
    assert len(pairs) == 8 and all(0 <= j <= i for i, (_, j) in enumerate(pairs))


def test_weight_step_runs_only_the_selected_activation_per_node():
    model = tiny_model()
    strategy = nasp()
    calls: list[tuple[str, tuple[int, ...]]] = []
    cell = model.cell
    names = list(cell.spec.ops)
    for k, act in enumerate(cell.acts):
        def counted(z, act=act, name=names[k]):
            calls.append((name, tuple(z.shape)))
            return act(z)
        cell.acts[k] = counted
    selected = {names[k] for k in strategy.selection["recurrent"] if k >= 0}
    for k, name in enumerate(names):  # an op no node selected must never run
        if name not in selected:
            def boom(z, name=name):
                raise AssertionError(f"unselected op {name} ran")
            cell.acts[k] = boom
    x, y = tokens()
    logits, _ = model(x, model.init_hidden(B), strategy.weighting())
    F.cross_entropy(logits.view(-1, V), y).backward()
    assert len(calls) == 8 * T  # one activation per node per step
    assert all(shape == (1, B, H) for _, shape in calls)  # on one predecessor
    per_step = [name for name, _ in calls[:8]]
    assert per_step == list(strategy.genotype().cells["recurrent"][i][0] for i in range(8))
    # one linear transform per node: every node matrix got a gradient, computed from 1 state
    assert all(w.grad is not None for w in cell.ws)
    plan = cell.schedule(strategy.weighting()["recurrent"])
    assert all(len(groups) == 1 and len(groups[0].preds) == 1 for groups in plan)


@pytest.mark.parametrize("space", ["rnn", "rnn-darts"])
def test_lean_arch_gradient_equals_full_pass_at_abar(space):
    model = tiny_model(space)
    x, y = tokens()
    h = torch.randn(B, H, dtype=torch.float64) * 0.1
    strategy = nasp(space)
    ctx = context(model, x, y, h)
    (lean,) = strategy.arch_gradient(ctx, None)
    cell = get_space(space).cells["recurrent"]
    bar = strategy.A_bar["recurrent"].clone().requires_grad_(True)
    full = {"recurrent": CellWeighting(bar, dense_plan(cell.num_edges, cell.num_ops))}
    (dense,) = torch.autograd.grad(ctx.loss(None, full), [bar])
    assert dense.abs().max() > 0
    assert torch.allclose(lean, dense, rtol=1e-9, atol=1e-12)
    # the lean pass builds no graph into unselected ops: no weight gradient was touched
    assert all(p.grad is None for p in model.parameters())


def test_probe_ops_are_not_back_propagated():
    model = tiny_model()
    strategy = nasp()
    x, y = tokens()
    bar = {k: v.double().requires_grad_(True) for k, v in strategy.A_bar.items()}
    w = strategy.arch_weighting(bar)
    plan = model.cell.schedule(w["recurrent"])
    for groups in plan:
        run_groups = [g for g in groups if g.graph]
        assert len(run_groups) == 1 and len(run_groups[0].preds) == 1
        assert sum(not t.probe for g in groups for t in g.terms) == 1
    codes = w["recurrent"].plan
    assert sum(c == RUN for row in codes for c in row) == 8


def small_cfg(tmp_path, **kw):
    root = write_corpus(tmp_path / "ptb", lines=120)
    opts = dict(task="lm", preset="quick", data="ptb", data_root=str(root), emsize=H, nhid=H,
                batch_size=4, eval_batch_size=4, bptt=5, epochs=1, max_steps_per_epoch=3,
                device="cpu", log_every=1)
    opts.update(kw)
    return resolve(SearchConfig, opts)


def arch_context(task, lr=0.5):
    weights = list(task.model.parameters())
    opt = torch.optim.SGD(weights, lr=lr, momentum=0.9, weight_decay=1e-4)
    return ArchContext(task.loss, weights, opt), opt


@pytest.mark.parametrize("name", ["darts", "darts2", "nasp"])
def test_arch_step_runs_on_the_lm_task(tmp_path, name):
    cfg = small_cfg(tmp_path, strategy=name, space="rnn-darts" if name != "nasp" else "rnn")
    task = build_lm_task(cfg, torch.device("cpu"))
    strategy = make_strategy(name, task.space, dtype=torch.float32, seed=0, arch_lr=0.1)
    ctx, opt = arch_context(task)
    before = [p.detach().clone() for p in task.model.parameters()]
    arch_before = [a.detach().clone() for a in strategy.parameters()]
    for train_batch, val_batch in task.batches(0):
        strategy.arch_step(ctx, train_batch, val_batch)
        # look-ahead passes leave the weights exactly as they were
        assert all(torch.equal(p, q) for p, q in zip(task.model.parameters(), before))
        opt.zero_grad()
        loss, sums = task.train_loss(train_batch, strategy.weighting())
        loss.backward()
        opt.step()
        before = [p.detach().clone() for p in task.model.parameters()]
        assert set(sums) == {"loss_sum", "count"}
    assert any(not torch.equal(a, b) for a, b in zip(strategy.parameters(), arch_before))
    metrics = task.evaluate(strategy.eval_weighting())
    assert set(metrics) == {"valid_loss", "valid_ppl"} and metrics["valid_ppl"] > 1
    assert len(strategy.genotype().recurrent) == 8


def test_loss_does_not_advance_state_and_streams_advance_as_documented(tmp_path):
    cfg = small_cfg(tmp_path, max_steps_per_epoch=None)
    task = build_lm_task(cfg, torch.device("cpu"))
    task.model.eval()  # deterministic forward passes
    w = nasp().weighting()
    pairs = task.batches(0)
    train_b, val_b = next(pairs)
    assert torch.count_nonzero(train_b.hidden) == 0 and torch.count_nonzero(val_b.hidden) == 0
    a, b = task.loss(val_b, w), task.loss(val_b, w)
    assert torch.equal(a, b)  # same start state every call
    task.loss(train_b, w)  # a training batch evaluated by a strategy: no effect on its stream
    task.train_loss(train_b, w)
    train_2, val_2 = next(pairs)
    _, h_train = task.model(train_b.data, train_b.hidden, w)
    _, h_val = task.model(val_b.data, val_b.hidden, w)
    assert torch.equal(train_2.hidden, h_train) and torch.equal(val_2.hidden, h_val)
    assert not train_2.hidden.requires_grad
    # a stream with no loss call keeps its state; one that wraps round restarts from zeros
    state = task.state_dict()
    assert torch.equal(state["valid_hidden"], h_val)
    steps = task.steps_per_epoch()
    assert steps == task.train.windows
    first_of_next_epoch = task.train.batch(steps)
    assert torch.count_nonzero(first_of_next_epoch.hidden) == 0
    task.load_state_dict({"train_hidden": h_train, "valid_hidden": h_val})
    assert torch.equal(task.valid.hidden, h_val)


def test_reset_parameters_reinitialises_the_whole_supernet():
    """Random search re-initialises every module that has ``reset_parameters``."""
    model = tiny_model(dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    assert model.decoder.weight is model.encoder.weight
    assert model.encoder.weight.abs().max() <= 0.1 and model.encoder.weight.std() > 0.01
    assert torch.count_nonzero(model.decoder.bias) == 0
    for w in [model.cell.w0, *model.cell.ws]:
        assert w.abs().max() <= 0.04 and w.std() > 0.005
