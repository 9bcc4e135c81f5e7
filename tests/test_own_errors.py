"""Bad input to a search of the user's own model: one ``NaspError`` (one ``error:`` line on the
command line) naming the fix, raised before any weight step, with nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nasp
from nasp.cli import main
from nasp.errors import NaspError
from nasp.supernet.choices import Choice, InputChoice

BATCHES = [(torch.randn(8, 2, 6, 6), torch.randint(0, 3, (8,))) for _ in range(2)]


class Net(nn.Module):
    def __init__(self, a: nn.Module | None = None, pick: nn.Module | None = None,
                 inputs: int = 2) -> None:
        super().__init__()
        self.a = a or Choice({"k1": nn.Conv2d(2, 2, 1), "k3": nn.Conv2d(2, 2, 3, padding=1)})
        self.pick = pick or InputChoice(2, 1)
        self.inputs = inputs
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.head(self.pick([x, y, y][: self.inputs]).mean((2, 3)))


def ce(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        return self.lin(x.mean((2, 3)))


class Twice(nn.Module):  # two Choices labelled alike with other candidates
    def __init__(self) -> None:
        super().__init__()
        self.a = Choice({"k1": nn.Conv2d(2, 2, 1)}, label="same")
        self.b = Choice({"k3": nn.Conv2d(2, 2, 3, padding=1)}, label="same")
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        return self.head(self.b(self.a(x)).mean((2, 3)))


SEARCHES = {
    "no choices": (lambda: dict(model=Plain()), "holds no nasp.Choice"),
    "shapes differ": (lambda: dict(model=Net(a=Choice({"k1": nn.Conv2d(2, 2, 1),
                                                       "k3": nn.Conv2d(2, 2, 3)}))),
                      r"Choice 'a' give outputs of different shapes \(k1: \(8, 2, 6, 6\), "
                      r"k3: \(8, 2, 4, 4\)\)"),
    "one label, other candidates": (lambda: dict(model=Twice()), "different candidates"),
    "a list of the wrong length": (lambda: dict(model=Net(inputs=3)),
                                   "InputChoice 'pick' takes a list of 2 tensors, got 3"),
    "a loss that is no scalar": (lambda: dict(model=Net(), loss=lambda m, b: F.cross_entropy(
        m(b[0]), b[1], reduction="none")), r"returned \(8,\), not a scalar"),
    "a NaN loss": (lambda: dict(model=Net(), loss=lambda m, b: ce(m, b) * float("nan")),
                   "loss.*is nan on the first training batch"),
    "a loss that is no function": (lambda: dict(model=Net(), loss=3), "not a function"),
    "batches that are no iterable": (lambda: dict(model=Net(), train=3), "not an iterable"),
    "model without data": (lambda: dict(model=Net(), train=None), "needs train too"),
    "another space with a model": (lambda: dict(model=Net(), space="darts"),
                                   "space='darts' does not go with model="),
}


@pytest.mark.parametrize("case", sorted(SEARCHES))
def test_a_bad_search_of_a_users_model_is_one_error_and_writes_nothing(tmp_path, case):
    make, match = SEARCHES[case]
    kwargs = dict(train=BATCHES, valid=BATCHES, loss=ce, strategy="nasp", epochs=1,
                  out=str(tmp_path / "run"), progress=False, device="cpu")
    kwargs.update(make())
    with pytest.raises(NaspError, match=match):
        nasp.search(**kwargs)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("make, match", [
    (lambda: InputChoice(3, 4), "k=4 with n=3"),
    (lambda: InputChoice(3, 0), "k=0 with n=3"),
    (lambda: InputChoice(0, 1), "at least one input"),
    (lambda: InputChoice(2, 1.5), "not a whole number"),
    (lambda: InputChoice(2, 1, reduction="max"), "reduction 'max' is unknown"),
    (lambda: Choice({}), "at least one candidate"),
    (lambda: Choice({"a.b": nn.Identity()}), "without dots"),
    (lambda: Choice({"f": torch.relu}), "not a torch.nn.Module"),
    (lambda: Choice(nn.Identity()), "dict name -> module or a list"),
    (lambda: Choice([nn.Identity()], label=""), "label '' is not a non-empty string"),
])
def test_bad_choices_fail_where_they_are_made(make, match):
    with pytest.raises(NaspError, match=match):
        make()


@pytest.mark.parametrize("arch, match", [
    ({"a": "k3"}, "no choice for label.*'pick'"),
    ({"a": "k3", "pick": [1], "c": "k1"}, "label.*the model does not have: 'c'"),
    ({"a": "k7", "pick": [1]}, "'k7' is not a candidate of Choice 'a'.*k1, k3"),
    ({"a": "k3", "pick": [2]}, r"\[2\] is no choice of InputChoice 'pick'"),
    ({"a": "k3", "pick": [0, 1]}, "list of 1 different input indices"),
    ({"a": "k3", "pick": 1}, "is no choice of InputChoice"),
    (["k3"], "dict label -> choice"),
])
def test_fix_names_what_is_wrong_with_an_arch(arch, match):
    with pytest.raises(NaspError, match=match):
        nasp.fix(Net(), arch)


def test_a_model_with_choices_run_outside_a_search_says_how_to_run_it():
    with pytest.raises(NaspError, match="ran outside a search.*nasp.fix"):
        Net()(torch.randn(1, 2, 6, 6))


SPACE_FILE = '''
import nasp
from torch import nn

def ok(in_channels, num_classes):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1),
                         nasp.Choice({"a": nn.Identity(), "b": nn.ReLU()}),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

def not_a_model(in_channels, num_classes):
    return 3

def fails(in_channels, num_classes):
    raise ValueError("broken")

def wrong_logits(in_channels, num_classes):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1),
                         nasp.Choice({"a": nn.Identity(), "b": nn.ReLU()}),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes + 1))

value = 5
'''


def _cli(tmp_path: Path, capsys, *argv: str) -> tuple[int, str]:
    code = main(["search", "--quiet", "--epochs", "1", "--max-train-samples", "256",
                 "--out", str(tmp_path / "run"), *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("space, match", [
    ("{d}/missing.py:ok", "file .*missing.py does not exist"),
    ("{d}/space.py:nothing", "has no function 'nothing'"),
    ("{d}/space.py:value", "has no function 'value'"),
    ("{d}/broken.py:ok", r"importing .*broken.py failed \(ZeroDivisionError"),
    ("{d}/space.py:not_a_model", "returned a int, not a torch.nn.Module"),
    ("{d}/space.py:fails", r"failed \(ValueError: broken\)"),
    ("{d}/space.py:wrong_logits", r"returns \(64, 11\).*returns \(64, 10\)"),
    ("no_such_package.mod:fn", "module 'no_such_package.mod' cannot be imported"),
    ("{d}/space.py:", "names no function"),
])
def test_a_bad_space_reference_is_one_error_line_and_nothing_written(tmp_path, capsys, space,
                                                                   match):
    (tmp_path / "space.py").write_text(SPACE_FILE)
    (tmp_path / "broken.py").write_text("1 / 0\n")
    before = set(os.listdir(tmp_path))
    code, err = _cli(tmp_path, capsys, "--space", space.format(d=tmp_path))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert __import__("re").search(match, lines[0]), lines[0]
    assert "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before  # no run folder


def test_task_model_on_the_command_line_says_to_use_python(tmp_path, capsys):
    code, err = _cli(tmp_path, capsys, "--task", "model")
    assert code == 2 and "nasp.search(model=net" in err
    assert not (tmp_path / "run").exists()
