"""The official NATS-Bench topology archive, read when a user has it (optional).

The shipped table holds 200-epoch test accuracy only. The archive (a folder such as
``NATS-tss-v1_0-3ffb9-simple`` with one ``{index:06d}.pickle.pbz2`` per cell) also has
validation accuracy, per-epoch curves and the 12-epoch training runs. Each file is a
bz2-compressed pickle of ``{hp: results}`` with hp ``"12"`` or ``"200"`` (training epochs);
``results`` holds ``dataset_seed`` (dataset -> seeds) and ``all_results`` ((dataset, seed) ->
one training run, whose ``eval_acc1es`` maps ``"<split>@<epoch>"`` to accuracy and whose
``train_acc1es`` maps epoch to training accuracy). The NATS-Bench API stores these as plain
dicts, so they are read here with an unpickler that resolves nothing but ``OrderedDict`` and
NumPy scalars and arrays (``nasp.data.pickles``): a file that asks for any other object (the
``-full`` archive's torch weights, or anything crafted) is refused.

Datasets and splits are the benchmark's: CIFAR-10 validation is ``("cifar10-valid",
"x-valid")``, CIFAR-10 test ``("cifar10", "ori-test")``, CIFAR-100 and ImageNet16-120 use
``"x-valid"`` / ``"x-test"``.
"""

from __future__ import annotations

import bz2
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasp.data.pickles import PLAIN_RECORDS, restricted_load
from nasp.errors import NaspError
from nasp.nb201.table import arch_string, index_of

EXT = ".pickle.pbz2"
# the names nasp reports -> (the archive's dataset, its split)
FIGURES = {
    "cifar10_valid": ("cifar10-valid", "x-valid"),
    "cifar10_test": ("cifar10", "ori-test"),
    "cifar100_valid": ("cifar100", "x-valid"),
    "cifar100_test": ("cifar100", "x-test"),
    "imagenet16_valid": ("ImageNet16-120", "x-valid"),
    "imagenet16_test": ("ImageNet16-120", "x-test"),
}


def load_archive_file(path: str | os.PathLike) -> dict[str, Any]:
    """The ``{hp: results}`` dict of one archive file, read without resolving any object
    other than plain data."""
    p = Path(path)
    if not p.is_file():
        raise NaspError(f"{p} not found", "expected a NATS-Bench topology archive file "
                        f"(<index>{EXT}) there")
    try:
        with bz2.open(p, "rb") as f:
            data = restricted_load(f, PLAIN_RECORDS, encoding="latin1")
    except Exception as e:  # bz2 and pickle raise many types on damaged or foreign input
        raise NaspError(f"cannot read {p}: {type(e).__name__}: {e}",
                        "expected a NATS-Bench topology archive file of plain records (the "
                        "-simple archive; the -full one also holds torch weights)") from None
    if not isinstance(data, dict) or not data or not all(
            isinstance(v, dict) and "all_results" in v and "dataset_seed" in v
            for v in data.values()):
        raise NaspError(f"{p} is not a NATS-Bench topology record",
                        "expected a dict of {hp: {'all_results', 'dataset_seed', ...}}")
    return {str(k): v for k, v in data.items()}


@dataclass(frozen=True)
class ArchiveCell:
    """One cell's records in the archive: ``results[hp]`` for each training length."""

    index: int
    arch: str
    results: dict[str, dict[str, Any]]

    @property
    def hps(self) -> tuple[str, ...]:
        return tuple(sorted(self.results, key=int))

    def _runs(self, dataset: str, hp: str) -> list[dict[str, Any]]:
        if hp not in self.results:
            raise NaspError(f"cell {self.index} has no {hp}-epoch results in the archive",
                            f"use one of: {', '.join(self.hps)}")
        res = self.results[hp]
        seeds = res["dataset_seed"].get(dataset)
        if not seeds:
            raise NaspError(f"cell {self.index} has no {hp}-epoch results on {dataset!r}",
                            f"use one of: {', '.join(res['dataset_seed'])}")
        return [res["all_results"][(dataset, seed)] for seed in seeds]

    def accuracy(self, dataset: str, split: str, hp: str = "200",
                 epoch: int | None = None) -> float:
        """Accuracy (%) on ``split`` ("train", "x-valid", "x-test", "ori-test") after ``epoch``
        (0-based; default the last), mean over the benchmark's seeds."""
        values = []
        for run in self._runs(dataset, str(hp)):
            e = int(run["epochs"]) - 1 if epoch is None else int(epoch)
            table = run["train_acc1es"] if split == "train" else run["eval_acc1es"]
            key = e if split == "train" else f"{split}@{e}"
            if key not in table:
                raise NaspError(f"cell {self.index}: no {split!r} accuracy after epoch {e} on "
                                f"{dataset!r} ({hp}-epoch runs)",
                                "the splits are train, x-valid, x-test, ori-test; epochs are "
                                f"0..{int(run['epochs']) - 1}")
            values.append(float(table[key]))
        return sum(values) / len(values)

    def figures(self, hp: str = "200") -> dict[str, float]:
        """Final validation and test accuracy on the three datasets (``FIGURES`` names), for
        the figures this cell's ``hp``-epoch runs hold."""
        out = {}
        res = self.results.get(str(hp), {})
        for name, (dataset, split) in FIGURES.items():
            if dataset in res.get("dataset_seed", {}):
                try:
                    out[name] = self.accuracy(dataset, split, str(hp))
                except NaspError:
                    continue  # e.g. the 12-epoch cifar10 runs hold no test split
        return out


def archive_path(folder: str | os.PathLike, index: int) -> Path:
    """The file of cell ``index`` in an archive folder (zero-padded name, or the plain one)."""
    root = Path(folder).expanduser()
    plain = root / f"{index}{EXT}"
    padded = root / f"{index:06d}{EXT}"
    return plain if plain.exists() and not padded.exists() else padded


def read_cell(folder: str | os.PathLike, cell: Any) -> ArchiveCell:
    """A cell's archive records; ``cell`` is its benchmark index, cell string or genotype."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NaspError(f"NATS-Bench archive folder {root} not found",
                        "pass the folder of per-cell files, e.g. NATS-tss-v1_0-3ffb9-simple")
    if isinstance(cell, int):
        index, arch = cell, None
    else:
        arch = arch_string(cell)
        index = index_of(arch)
    results = load_archive_file(archive_path(root, index))
    stored = {str(r.get("arch_str")) for r in results.values() if r.get("arch_str")}
    if arch is None:
        arch = stored.pop() if len(stored) == 1 else ""
    elif stored and stored != {arch}:
        raise NaspError(f"{archive_path(root, index)} holds cell {sorted(stored)[0]}, not {arch}",
                        "this archive does not number cells in the NAS-Bench-201 / "
                        "NATS-Bench topology order the table uses")
    return ArchiveCell(index, arch, results)
