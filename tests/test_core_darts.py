"""DARTS on the same supernet: the second-order hypergradient against an exact computation."""

import pytest
import torch

from helpers import context, make_strategy, tiny_batch, tiny_net
from nasp.spaces.cnn import cnn_space
from nasp.supernet.cnn import SearchCNN
from nasp.supernet.freeze import batch_norms, frozen_batch_stats
from nasp.supernet.weighting import CellWeighting, dense_plan


def smooth_net(space):
    """A tiny supernet that is smooth everywhere (tanh for ReLU, no max-pool), so that the
    finite-difference Hessian-vector product converges to the exact one; with ReLU kinks the
    difference quotient jumps wherever a unit changes sign."""
    torch.manual_seed(0)
    net = SearchCNN(space, 1, 5, channels=2, layers=3).double()
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Tanh())
    return net


def test_second_order_hypergradient_matches_exact_unrolled_gradient():
    ops = ("skip_connect", "avg_pool_3x3", "sep_conv_3x3", "conv_3x3")
    space = cnn_space("smooth", ops, ops, "test")
    net = smooth_net(space)
    s = make_strategy("darts2", space, seed=0)
    with torch.no_grad():
        for _, a in s.arch.items():
            a.mul_(100)
    ctx = context(net, lr=0.05, momentum=0.9, wd=3e-4)
    train, val = tiny_batch(seed=1), tiny_batch(seed=2)
    # give the optimizer a momentum buffer, as in the middle of a search
    ctx.optimizer.zero_grad()
    ctx.loss(train, s.weighting()).backward()
    ctx.optimizer.step()
    alpha = s.arch.leaves()
    approx = s.unrolled_gradient(ctx, train, val, alpha)
    first = [g.detach() for g in torch.autograd.grad(s._val_loss(ctx, val, alpha),
                                                      list(alpha.values()))]

    # exact: differentiate L_val(w'(α), α) through the unrolled step with create_graph
    params = ctx.weights
    w0 = [p.detach().clone() for p in params]
    a2 = s.arch.leaves()
    wt = {k: CellWeighting(a.softmax(-1), dense_plan(*a.shape)) for k, a in a2.items()}
    g = torch.autograd.grad(ctx.loss(train, wt), params, create_graph=True)
    lr, mom, wd = 0.05, 0.9, 3e-4
    unrolled = [w - lr * (mom * ctx.optimizer.state[p]["momentum_buffer"] + gi + wd * w)
                for p, w, gi in zip(params, w0, g)]
    from torch.func import functional_call

    names = [n for n, _ in net.named_parameters()]
    x, y = val
    wv = {k: CellWeighting(a.softmax(-1), dense_plan(*a.shape)) for k, a in a2.items()}
    logits = functional_call(net, dict(zip(names, unrolled)), (x, wv))
    exact = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), list(a2.values()))
    for ga, ge in zip(approx, exact):
        assert ge.abs().max() > 1e-6
        # finite differences with DARTS's ε = 0.01/‖∇‖ leave an O(ε²) error: allow 0.5% of scale
        torch.testing.assert_close(ga, ge, rtol=1e-2, atol=5e-3 * float(ge.abs().max()))
    # the second-order term is not negligible here, so the comparison is a real check
    assert max(float((f - e).abs().max()) for f, e in zip(first, exact)) > 0.05 * max(
        float(e.abs().max()) for e in exact)
    # the look-ahead left the weights as they were
    assert all(torch.equal(p, w) for p, w in zip(params, w0))


def test_first_order_step_moves_alpha_and_derives_without_none():
    net = tiny_net("darts")
    s = make_strategy("darts", "darts", seed=0, arch_lr=0.1)
    before = {k: v.clone() for k, v in s.arch.items()}
    s.arch_step(context(net), None, tiny_batch())
    assert all(not torch.equal(s.arch[k], before[k]) for k in before)
    # make "none" the strongest everywhere: the derivation must still pick real ops
    for _, a in s.arch.items():
        a.data[:, 0] = 10.0
    geno = s.genotype()
    assert all(op != "none" for op, _ in geno.normal + geno.reduce)
    assert len(geno.normal) == 8


@pytest.mark.parametrize("name", ["darts2", "darts", "nasp", "asap"])
def test_arch_step_leaves_weights_and_batchnorm_statistics_as_they_were(name):
    """Copies taken *before* the step: DARTS-2nd's look-ahead moves every weight and runs
    training-mode passes at shifted weights, yet afterwards weights and running statistics are
    bit-identical (the loop runs every architecture step with the statistics frozen)."""
    net = tiny_net("darts")
    s = make_strategy(name, "darts", seed=0, arch_lr=0.1)
    ctx = context(net)
    ctx.optimizer.zero_grad()  # a momentum buffer, as in the middle of a search
    ctx.loss(tiny_batch(seed=5), s.weighting()).backward()
    ctx.optimizer.step()
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    with frozen_batch_stats(batch_norms(net)):
        s.arch_step(ctx, tiny_batch(seed=1), tiny_batch(seed=2))
    assert all(torch.equal(p, weights[n]) for n, p in net.named_parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in net.named_buffers())
    # without the freeze the same step would have moved the statistics: the check is real
    s.arch_step(ctx, tiny_batch(seed=1), tiny_batch(seed=2))
    assert any(not torch.equal(b, buffers[n]) for n, b in net.named_buffers())


def test_zero_validation_gradient_gives_a_finite_second_order_step():
    """ε = 0.01 / ‖∇‖ with ‖∇‖ = 0 (a loss that ignores the weights) must not be inf/nan."""
    net = tiny_net()
    s = make_strategy("darts2", seed=0)
    ctx = context(net)
    def loss(batch, w):  # depends on every weight, with a zero gradient with respect to them
        one = 1.0 + sum(p.sum() for p in net.parameters()) * 0.0
        return sum((v.weights ** 2).sum() for v in w.values()) * one

    ctx.loss = loss
    alpha = s.arch.leaves()
    grads = s.unrolled_gradient(ctx, None, None, alpha)
    assert all(torch.isfinite(g).all() for g in grads)
