"""Training configuration of a CNN genotype's evaluation network, and its presets.

The dataclass defaults are the CIFAR-10 recipe of DARTS and NASP (REFERENCE.md); the presets are

* ``paper``: that recipe (20 cells, C=36, 600 epochs, ...). With 64x64 data (Tiny ImageNet)
  ``paper`` becomes ``tiny-imagenet`` automatically.
* ``tiny-imagenet``: the NASP release's Tiny ImageNet recipe (14 cells, C=48, 250 epochs, lr 0.1
  decayed by 0.97 per epoch, weight decay 3e-5, label smoothing 0.1). What the reference leaves
  open follows DARTS's ImageNet recipe (**ours**): batch 128, no drop-path, no cutout.
* ``quick`` (the default): a small network on the bundled Fashion-MNIST sample that trains in
  well under 15 minutes on 2 CPU cores and still reports a real test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nasp.configs.base import RunConfig, check_values, common_checks, opt
from nasp.configs.search import COMPILE_MODES, MEMORY_FORMATS
from nasp.errors import NaspError


@dataclass
class TrainConfig(RunConfig):
    COMMAND: ClassVar[str] = "train"
    TASK: ClassVar[str | None] = "cnn"
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"device", "log_every", "data_root", "tensorboard",
         "dist_timeout"})
    REMOVED: ClassVar[dict[str, str]] = {
        "channels_last": "use --memory-format channels_last (or contiguous; auto by default)"}

    # what to train
    genotype: str = opt("DARTS_V2", "genotype to train: a published name (DARTS_V1, DARTS_V2, "
                        "NASP_12), a genotype.json, a search run folder, or a NAS-Bench-201 "
                        "cell string ('|nor_conv_3x3~0|+|...|')")
    arch: str | None = opt(None, "instead of a genotype, the architecture of a search of your "
                           "own model (a `nasp search --space FILE.py:FUNCTION` run folder): "
                           "its fixed network, trained from scratch")
    data: str = opt("fashion-mnist-sample", "dataset: fashion-mnist-sample (bundled), "
                    "fashion-mnist, mnist, cifar10, cifar100, imagenet16-120, tiny-imagenet, "
                    "folder")
    data_root: str | None = opt(None, "folder holding the dataset's files (all datasets but "
                                "the bundled sample)")
    preset: str = opt("quick", "preset: quick, paper, tiny-imagenet, nb201, nb201-quick (paper "
                      "on 64x64 data means tiny-imagenet; quick and paper of a NAS-Bench-201 cell "
                      "mean nb201-quick and nb201)")
    seed: int = opt(0, "random seed of initialisation, data order and augmentation (0 to "
                     "4294967295)")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    out: str | None = opt(None, "run folder (default runs/train-<genotype>-<data>-s<seed>)")
    # budget
    epochs: int = opt(600, "training epochs")
    batch_size: int = opt(96, "training batch size")
    eval_batch_size: int = opt(256, "batch size of validation and test passes")
    valid_portion: float = opt(0.0, "share of the training set held out to choose best.pt; 0 "
                               "trains on all of it and validates on the test set")
    max_train_samples: int | None = opt(None, "train on a stratified subset of this many images")
    max_steps_per_epoch: int | None = opt(None, "cap optimizer steps per epoch (smoke tests)")
    # optimizer
    lr: float = opt(0.025, "initial learning rate of SGD")
    lr_schedule: str = opt("cosine", "cosine (to 0 at the last epoch) or step (times --lr-gamma "
                           "every epoch)")
    lr_gamma: float = opt(0.97, "per-epoch factor of the step schedule")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(3e-4, "L2 weight decay")
    grad_clip: float = opt(5.0, "clip the gradient norm to this; 0 turns clipping off")
    label_smoothing: float = opt(0.0, "label smoothing of the training loss")
    # network
    channels: int = opt(36, "channels C of the first cells (even)")
    layers: int = opt(20, "number of cells; reduction cells at layers//3 and 2*layers//3")
    auxiliary: bool = opt(True, "auxiliary classifier after cell 2*layers//3 (training only)")
    auxiliary_weight: float = opt(0.4, "weight of the auxiliary loss")
    drop_path_prob: float = opt(0.2, "drop-path probability reached at the last epoch (linear "
                                "from 0)")
    # augmentation
    cutout: int = opt(16, "cutout square side in pixels; 0 turns it off")
    crop_padding: int | None = opt(None, "random-crop padding in pixels (default: 4 for >=32 px "
                                   "images, else 2)")
    hflip: bool | None = opt(None, "random horizontal flips (default: as the dataset says)")
    # speed
    amp: bool | None = opt(None, "bf16 autocast (default: on for CUDA)")
    memory_format: str = opt("auto", "layout of images and activations: auto (channels_last on "
                             "CPU and CUDA, where it measured faster), channels_last or "
                             "contiguous; config.json records the resolved one")
    compile: str = opt("off", "compile the network (torch.compile; CUDA graphs on a GPU): off, "
                       "on, or auto (on for CUDA; eager on the CPU, where compiled training "
                       "measured no faster); config.json records the resolved one and a "
                       "resume keeps it")
    # bookkeeping
    log_every: int = opt(20, "progress-bar refresh (one host-device sync) every N steps")
    tensorboard: bool = opt(False, "also write TensorBoard logs to RUN/tb (needs the "
                            "tensorboard package)")
    dist_timeout: float = opt(600.0, "with several processes, seconds a collective may wait "
                              "for a rank before the run stops naming it")

    @classmethod
    def preset_values(cls, layered: dict[str, Any]) -> dict[str, Any]:
        own = {}
        if layered.get("arch") is not None:  # config.json then names the network it trains
            if "genotype" in layered:
                raise NaspError("--genotype and --arch both name a network to train",
                                "give one of them")
            own = {"genotype": str(layered["arch"])}
        return {**cls._preset(layered), **own}

    @classmethod
    def _preset(cls, layered: dict[str, Any]) -> dict[str, Any]:
        preset = layered.get("preset", cls.preset)
        if preset in ("quick", "paper") and _is_nb201(layered.get("genotype", cls.genotype)):
            preset = {"quick": "nb201-quick", "paper": "nb201"}[preset]
        if preset == "paper":
            data = layered.get("data", cls.data)
            side = dataset_shape(data, layered.get("data_root"))[1]
            if side >= 64:  # the paper recipe of 64x64 data is NASP's Tiny ImageNet one
                preset = "tiny-imagenet"
        if preset not in PRESETS:
            raise NaspError(f"unknown preset {preset!r}",
                            f"use --preset with one of: {', '.join(sorted(PRESETS))}")
        return {**PRESETS[preset], "preset": preset}

    def validate(self) -> None:
        checks = common_checks(self) + [
            (0.0 <= self.valid_portion < 1.0, "valid_portion",
             "use --valid-portion in [0, 1), e.g. 0.1; 0 validates on the test set"),
            (self.lr_schedule in ("cosine", "step"), "lr_schedule",
             "use --lr-schedule cosine or step"),
            (0.0 < self.lr_gamma <= 1.0, "lr_gamma", "use --lr-gamma in (0, 1]"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing",
             "use --label-smoothing in [0, 1)"),
            (self.auxiliary_weight >= 0, "auxiliary_weight", "use --auxiliary-weight 0 or more"),
            (0.0 <= self.drop_path_prob < 1.0, "drop_path_prob",
             "use --drop-path-prob in [0, 1)"),
            (self.memory_format in MEMORY_FORMATS, "memory_format",
             f"use --memory-format {', '.join(MEMORY_FORMATS)}"),
            (self.compile in COMPILE_MODES, "compile",
             f"use --compile {', '.join(COMPILE_MODES)}"),
        ]
        check_values(self, checks)
        if self.tensorboard:  # a missing package fails now, not after the first epoch
            from nasp.tensorboard import require_tensorboard

            require_tensorboard()

    def default_out(self) -> str:
        name = Path((self.arch or self.genotype).rstrip("/\\")).name.removesuffix(".json") \
            or "genotype"
        return f"runs/train-{name}-{self.data}-s{self.seed}"


PRESETS: dict[str, dict[str, Any]] = {
    # REFERENCE.md: the CIFAR-10 evaluation recipe of DARTS and NASP (= the dataclass defaults).
    "paper": dict(epochs=600, batch_size=96, lr=0.025, lr_schedule="cosine", momentum=0.9,
                  weight_decay=3e-4, grad_clip=5.0, channels=36, layers=20, auxiliary=True,
                  auxiliary_weight=0.4, drop_path_prob=0.2, cutout=16, label_smoothing=0.0,
                  valid_portion=0.0),
    # REFERENCE.md: NASP's Tiny ImageNet recipe; batch, drop-path and cutout as DARTS ImageNet.
    "tiny-imagenet": dict(epochs=250, batch_size=128, lr=0.1, lr_schedule="step", lr_gamma=0.97,
                          momentum=0.9, weight_decay=3e-5, grad_clip=5.0, channels=48,
                          layers=14, auxiliary=True, auxiliary_weight=0.4, drop_path_prob=0.0,
                          cutout=0, label_smoothing=0.1, valid_portion=0.0),
    # NAS-Bench-201's training of a cell (its 200-epoch protocol): C=16, 5 cells per stage, no
    # auxiliary head, drop-path or cutout; SGD 0.1 cosine, weight decay 5e-4, batch 256.
    "nb201": dict(epochs=200, batch_size=256, lr=0.1, lr_schedule="cosine", momentum=0.9,
                  weight_decay=5e-4, grad_clip=5.0, channels=16, layers=15, auxiliary=False,
                  drop_path_prob=0.0, cutout=0, label_smoothing=0.0, valid_portion=0.0),
    # An nb201 cell on the bundled data in minutes: one cell per stage.
    "nb201-quick": dict(epochs=6, batch_size=96, lr=0.05, lr_schedule="cosine", momentum=0.9,
                        weight_decay=5e-4, grad_clip=5.0, channels=16, layers=3,
                        auxiliary=False, drop_path_prob=0.0, cutout=0, label_smoothing=0.0,
                        valid_portion=0.1),
    # Measured (DARTS_V2, 2 CPU cores, torch 2.13): 8 min 35 s for the whole command, test
    # accuracy 87.9% (8 epochs: 11 min 18 s, 88.1%). ~80 s per epoch; size by that.
    "quick": dict(epochs=6, batch_size=96, lr=0.05, lr_schedule="cosine", momentum=0.9,
                  weight_decay=3e-4, grad_clip=5.0, channels=16, layers=8, auxiliary=True,
                  auxiliary_weight=0.4, drop_path_prob=0.1, cutout=0, label_smoothing=0.0,
                  valid_portion=0.1),
}

def _is_nb201(genotype: str) -> bool:
    """Whether a --genotype names a NAS-Bench-201 cell (its own network and recipe)."""
    from nasp.genotype import get_genotype

    try:
        return get_genotype(genotype, "cnn").family == "nb201"
    except NaspError:
        return False  # the training run reports a bad genotype itself


# (channels, height, width, classes) of datasets whose shape is fixed, so that presets and
# `nasp info` need not load them; other datasets (folder) are loaded to find out.
KNOWN_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "fashion-mnist-sample": (1, 28, 28, 10),
    "fashion-mnist": (1, 28, 28, 10),
    "mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
    "cifar100": (3, 32, 32, 100),
    "tiny-imagenet": (3, 64, 64, 200),
    "imagenet16-120": (3, 16, 16, 120),
}


def dataset_shape(data: str, root: str | None = None) -> tuple[int, int, int, int]:
    """(channels, height, width, classes) of a dataset, loading it only if its name does not
    fix the shape (e.g. ``folder``)."""
    if data in KNOWN_SHAPES:
        return KNOWN_SHAPES[data]
    from nasp.data import load_image_dataset

    ds = load_image_dataset(data, root)
    return (ds.channels, *ds.image_size, ds.num_classes)
