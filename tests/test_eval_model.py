"""The evaluation network of a genotype: shapes, drop-path, auxiliary head, sizes."""

import json

import pytest
import torch

from nasp.errors import NaspError
from nasp.genotype import GENOTYPES, Genotype, get_genotype
from nasp.models import build_eval_model, count_flops, count_params
from nasp.models.cnn import AuxiliaryHead, EvalCell, drop_path

DARTS_V2 = GENOTYPES["cnn"]["DARTS_V2"]


def tiny(in_channels=1, size=28, auxiliary=True, classes=10, genotype=DARTS_V2, layers=3):
    torch.manual_seed(0)
    return build_eval_model(genotype, in_channels, classes, size, channels=4, layers=layers,
                            auxiliary=auxiliary)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2", "NASP_12"])
def test_output_shapes_train_and_eval(shape, name):
    c, h, _ = shape
    net = tiny(c, h, auxiliary=True, classes=7, genotype=GENOTYPES["cnn"][name])
    x = torch.randn(2, *shape)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)


def test_large_images_get_a_reducing_stem():
    assert tiny(3, 64).stem_reductions == 1
    assert tiny(3, 32).stem_reductions == 0
    assert tiny(1, 28).stem_reductions == 0


def test_aux_pool_gives_2x2_for_7x7_and_matches_darts_for_8x8():
    for side, kernel, stride in ((8, 5, 3), (7, 5, 2)):
        pool = AuxiliaryHead(4, 3, (side, side)).features[1]
        assert pool.kernel_size == (kernel, kernel) and pool.stride == (stride, stride)
        assert pool(torch.zeros(1, 4, side, side)).shape[-2:] == (2, 2)


def test_no_aux_head_unless_asked_and_excluded_from_count():
    plain, with_aux = tiny(auxiliary=False), tiny(auxiliary=True)
    assert plain.auxiliary_head is None
    assert with_aux.auxiliary_head is not None
    plain.train()
    assert isinstance(plain(torch.randn(2, 1, 28, 28)), torch.Tensor)
    aux_params = sum(p.numel() for p in with_aux.auxiliary_head.parameters())
    assert aux_params > 0
    assert count_params(with_aux) == count_params(plain)
    assert count_params(with_aux, exclude_auxiliary=False) == count_params(plain) + aux_params


def test_darts_v2_size_matches_the_paper():
    net = build_eval_model(DARTS_V2, 3, 10, 32, channels=36, layers=20, auxiliary=True)
    assert count_params(net) == pytest.approx(3.3e6, rel=0.03)  # DARTS reports 3.3M
    flops = count_flops(net, (3, 32, 32))
    assert 450e6 < flops < 600e6  # ~528M multiply-adds
    assert net.training  # count_flops restores the mode


def test_count_flops_of_a_single_conv_and_linear():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 2))
    assert count_flops(net, (3, 5, 5)) == 8 * 25 * 27 + 200 * 2


def _cell(pairs, drop=True):
    geno = Genotype({"normal": tuple(pairs)}, {"normal": (2, 3, 4, 5)})
    torch.manual_seed(0)
    cell = EvalCell(geno.cells["normal"], geno.concat["normal"], 4, 4, 4, False, False)
    return cell


def test_drop_path_varies_with_rng_only_in_training():
    net = tiny(auxiliary=False)
    x = torch.randn(4, 1, 28, 28)
    net.drop_path_prob = 0.5
    net.train()
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(2)
    b = net(x)
    assert not torch.allclose(a, b)
    torch.manual_seed(1)
    assert torch.equal(net(x), a)  # same RNG, same drop mask
    net.eval()
    torch.manual_seed(1)
    e1 = net(x)
    torch.manual_seed(2)
    assert torch.equal(net(x), e1)


def test_drop_path_zero_has_no_effect():
    net = tiny(auxiliary=False)
    x = torch.randn(4, 1, 28, 28)
    net.train()
    net.drop_path_prob = 0.0
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(2)
    assert torch.equal(net(x), a)


def test_identity_ops_are_never_dropped():
    skip_only = [("skip_connect", 0), ("skip_connect", 1)] * 4
    cell = _cell(skip_only)
    assert not any(cell.droppable)
    s0, s1 = torch.randn(3, 4, 6, 6), torch.randn(3, 4, 6, 6)
    cell.train()
    ref = cell(s0, s1, 0.0)
    for seed in range(5):
        torch.manual_seed(seed)
        assert torch.equal(cell(s0, s1, 0.9), ref)
    mixed = _cell([("sep_conv_3x3", 0), ("skip_connect", 1)] * 4)
    assert mixed.droppable == [True, False] * 4


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 3, 3)
    y = drop_path(x, 0.25)
    per_sample = y.flatten(1)
    assert torch.isin(per_sample.unique(), torch.tensor([0.0, 1 / 0.75])).all()
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)
    assert y.mean().item() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("edit, reason", [
    (lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0]), "unknown op 'conv_9x9'"),
    (lambda d: d["normal"].__setitem__(2, ["sep_conv_3x3", 3]), "takes input 3"),
    (lambda d: d["reduce"].pop(), "has 7 edges, expected 8"),
])
def test_genotype_errors_name_the_reason(tmp_path, edit, reason):
    data = DARTS_V2.to_dict()
    edit(data)
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NaspError, match=reason):
        get_genotype(str(path))


def test_genotype_json_round_trip_builds_the_same_network(tmp_path):
    path = tmp_path / "g.json"
    DARTS_V2.to_json(path)
    back = get_genotype(str(path))
    assert back == DARTS_V2 and back.to_dict() == DARTS_V2.to_dict()
    a = build_eval_model(back, 3, 10, 32, channels=4, layers=3)
    assert count_params(a) == count_params(tiny(3, 32, auxiliary=False))


def test_reduction_concat_of_cell_inputs_is_rejected():
    geno = Genotype(dict(DARTS_V2.cells), {"normal": (2, 3, 4, 5), "reduce": (0, 2, 3)})
    with pytest.raises(NaspError, match="reduce_concat"):
        build_eval_model(geno, 3, 10, 32, channels=4, layers=3)


def test_recurrent_genotype_is_rejected():
    with pytest.raises(NaspError, match="recurrent"):
        build_eval_model(GENOTYPES["lm"]["DARTS_V2"], 3, 10, 32, channels=4, layers=3)


@pytest.mark.parametrize("name, macs", [("DARTS_V2", 528_359_040), ("NASP_12", 1_102_995_072)])
def test_published_cells_multiply_adds_at_paper_size(name, macs):
    """The nominal count (papers' convention): however ops.py computes a layer, e.g. the two
    1x1 convolutions of FactorizedReduce run as one 2x2 convolution."""
    net = build_eval_model(GENOTYPES["cnn"][name], 3, 10, 32, channels=36, layers=20)
    assert count_flops(net, (3, 32, 32)) == macs
