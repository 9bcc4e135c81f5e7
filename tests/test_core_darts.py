"""DARTS on the same supernet: the second-order hypergradient against an exact computation."""

import torch

from helpers import context, tiny_batch, tiny_net
from nasp.spaces import get_space
from nasp.spaces.cnn import cnn_space
from nasp.strategies import get_strategy
from nasp.supernet.cnn import SearchCNN
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
    s = get_strategy("darts2")(space, "cpu", seed=0)
    s.alpha = {k: (v.double() * 100) for k, v in s.alpha.items()}
    ctx = context(net, lr=0.05, momentum=0.9, wd=3e-4)
    train, val = tiny_batch(seed=1), tiny_batch(seed=2)
    # give the optimizer a momentum buffer, as in the middle of a search
    ctx.optimizer.zero_grad()
    ctx.loss(train, s.weighting()).backward()
    ctx.optimizer.step()
    alpha = {k: v.detach().requires_grad_(True) for k, v in s.alpha.items()}
    approx = s.unrolled_gradient(ctx, train, val, alpha)
    s.order = 1
    first = [g.detach() for g in torch.autograd.grad(s._val_loss(ctx, val, alpha),
                                                      list(alpha.values()))]

    # exact: differentiate L_val(w'(α), α) through the unrolled step with create_graph
    params = ctx.weights
    w0 = [p.detach().clone() for p in params]
    a2 = {k: v.detach().requires_grad_(True) for k, v in s.alpha.items()}
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
    s = get_strategy("darts")(get_space("darts"), "cpu", seed=0, arch_lr=0.1)
    s.alpha = {k: v.double() for k, v in s.alpha.items()}
    s.optimizer = torch.optim.Adam(list(s.alpha.values()), lr=0.1)
    before = {k: v.clone() for k, v in s.alpha.items()}
    s.arch_step(context(net), None, tiny_batch())
    assert all(not torch.equal(s.alpha[k], before[k]) for k in before)
    # make "none" the strongest everywhere: the derivation must still pick real ops
    for a in s.alpha.values():
        a.data[:, 0] = 10.0
    geno = s.genotype()
    assert all(op != "none" for op, _ in geno.normal + geno.reduce)
    assert len(geno.normal) == 8
