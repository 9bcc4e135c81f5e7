"""``nasp.load``: the trained network of a ``nasp train`` run, ready for the user's own data.

``load`` returns a :class:`LoadedRun`, a small record holding the network and, separately,
the preprocessing it was trained with. The preprocessing is not attached to the model: the
model stays a plain ``nn.Module`` whose ``forward`` is exactly what was trained (so it
exports, scripts, compiles and wraps in DDP as it is), and the preprocessing can be run where
the user's pipeline needs it (a data loader worker, another device).

Image classifiers (``task == "cnn"``)::

    run = nasp.load("runs/train-DARTS_V2")        # best.pt; last=True: checkpoint.pt
    logits = run.model(run.preprocess(images))     # images: uint8 0..255 or float 0..1
    logits = run.predict(images)                   # the same, no autograd, on the model's device

``run.preprocess`` takes (N, C, H, W), (C, H, W), channels-last (N, H, W, C) / (H, W, C) and,
for one-channel data, (N, H, W) and (H, W) arrays (torch tensors, numpy arrays, PIL images);
it returns
float32 (N, C, H, W) normalised per channel as in training: ``(x / 255 - mean) / std``.
Images must have the training size (``run.preprocess.size``); resizing is left to the user
because the right method depends on the images.

Language models (``task == "lm"``)::

    ids = run.preprocess.encode("the cat sat")     # (T, 1) token ids, ``<eos>`` after each line
    logits, hidden, _ = run.model(ids, run.model.init_hidden(1))   # (T, 1, vocabulary)
    run.preprocess.decode(logits[-1, 0].topk(5).indices)           # five likeliest next words
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasp.device import resolve_device
from nasp.errors import NaspError
from nasp.export.record import LM_DROPOUTS, build_network, missing_keys, record_of
from nasp.export.safetensors import read_safetensors
from nasp.genotype import Genotype

EOS = "<eos>"
UNK = "<unk>"
EXPORT_FORMAT, EXPORT_VERSION = "nasp-network", 1  # the JSON beside a safetensors export
EXPORT_SUFFIXES = (".json", ".safetensors")


@dataclass(frozen=True)
class ImagePreprocessing:
    """The input an image classifier was trained on: ``channels`` x ``size`` images, each
    channel normalised as ``(x / 255 - mean) / std``; ``classes[i]`` names logit ``i``."""

    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    def __call__(self, images: Any) -> torch.Tensor:
        """Float32 (N, C, H, W) network input from uint8 (0..255) or float (0..1) images."""
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
        c = self.channels
        if c == 1 and x.dim() == 3 and x.shape[-1] == 1 and x.shape[0] != 1:
            x = x[..., 0]  # one (H, W, 1) image
        if c == 1 and x.dim() == 2:
            x = x[None, None]
        elif c == 1 and x.dim() == 3:
            x = x[:, None]  # (N, H, W): a batch of one-channel images (or one (1, H, W))
        elif x.dim() == 3:
            x = x[None]
        if x.dim() != 4:
            raise NaspError(f"expected images of shape (N, {c}, H, W), got {tuple(x.shape)}",
                            "pass a batch (N, C, H, W) or one image (C, H, W)")
        if x.shape[1] != c and x.shape[-1] == c:
            x = x.permute(0, 3, 1, 2)  # channels last (numpy, PIL)
        if x.shape[1] != c:
            raise NaspError(f"the network takes {c}-channel images, got shape {tuple(x.shape)}",
                            "convert the images to " + ("grayscale" if c == 1 else f"{c} channels"))
        if tuple(x.shape[2:]) != tuple(self.size):
            h, w = self.size
            raise NaspError(f"the network was trained on {h}x{w} images, got "
                            f"{x.shape[2]}x{x.shape[3]}", f"resize the images to {h}x{w} first")
        x = x.float() if x.is_floating_point() else x.float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        return ((x - mean) / std).contiguous()


@dataclass(frozen=True)
class Vocabulary:
    """The words of a language model's ids, and the conversion of text to ids as in training:
    whitespace-split words, ``<eos>`` after every line."""

    words: tuple[str, ...]

    @cached_property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str | Sequence[str]) -> torch.Tensor:
        """(T, 1) token ids of ``text`` (a string, or a list of lines); words missing from
        the vocabulary become ``<unk>`` when it has one."""
        lines = text.splitlines() if isinstance(text, str) else list(text)
        unk = self.index.get(UNK)
        ids = []
        for line in lines:
            for word in line.split() + [EOS]:
                idx = self.index.get(word, unk)
                if idx is None:
                    raise NaspError(f"word {word!r} is not in the vocabulary",
                                    "use words of the training text")
                ids.append(idx)
        return torch.tensor(ids, dtype=torch.long).view(-1, 1)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        return [self.words[int(i)] for i in torch.as_tensor(ids).reshape(-1).tolist()]


@dataclass
class LoadedRun:
    """A trained network in eval mode and what its input must look like."""

    model: nn.Module
    preprocess: ImagePreprocessing | Vocabulary
    task: str
    genotype: Any  # a Genotype; a user model's arch (nasp.spaces.model.ModelArch)
    record: dict[str, Any]
    epoch: int | None
    checkpoint: Path

    @torch.inference_mode()
    def predict(self, images: Any) -> torch.Tensor:
        """Logits of an image classifier for raw images (see ``ImagePreprocessing``)."""
        if not isinstance(self.preprocess, ImagePreprocessing):
            raise NaspError("predict() is for image classifiers",
                            "for a language model call run.model(run.preprocess.encode(text), "
                            "run.model.init_hidden(1))")
        device = next(self.model.parameters()).device
        return self.model(self.preprocess(images).to(device))


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A nasp checkpoint read with ``weights_only=True`` (no code runs from the file)."""
    if not path.is_file():
        raise NaspError(f"no checkpoint at {path}", "pass a `nasp train` run folder")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise NaspError(f"checkpoint {path} cannot be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]})",
                        "it is damaged or was not written by nasp") from None


def _run_config(run_dir: Path) -> dict[str, Any]:
    from nasp.run_folder import read_json

    p = run_dir / "config.json"
    return read_json(p) if p.is_file() else {}


def find_checkpoint(run: str | os.PathLike, last: bool = False) -> Path:
    """``best.pt`` (or ``checkpoint.pt``) of a train run folder; a .pt file is taken as is.
    A search run or an empty folder is a ``NaspError``: there are no trained weights."""
    path = Path(run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise NaspError(f"run folder {path} does not exist", "pass a `nasp train --out` folder")
    config = _run_config(path)
    if config.get("command") == "search":
        raise NaspError(f"{path} is a search run: it holds a supernet, not a trained network",
                        f"train its cell first: nasp train --genotype {path}")
    name = "checkpoint.pt" if last else "best.pt"
    if not (path / name).is_file():
        raise NaspError(f"{path} holds no trained weights ({name} is missing)",
                        "train first (nasp train --out FOLDER), or let a started run finish "
                        "its first epoch")
    return path / name


def complete_record(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Fill in what checkpoints written before the full record lack (normalisation, classes,
    vocabulary, sizes) from the run's config.json and its data."""
    missing = missing_keys(record)
    if not missing:
        return record
    config = _run_config(run_dir)
    if not config:
        raise NaspError(f"the checkpoint lacks {', '.join(missing)} and {run_dir} has no "
                        "config.json to recover them", "load a whole run folder")
    record = dict(record)
    if record["task"] == "cnn":
        from nasp.data import load_image_dataset

        ds = load_image_dataset(config["data"], config.get("data_root"))
        record.setdefault("classes", list(ds.classes))
        record.setdefault("mean", list(ds.mean))
        record.setdefault("std", list(ds.std))
        record.setdefault("data", config["data"])
        return record
    from nasp.data.text import load_corpus

    corpus = load_corpus(config["data"], config.get("data_root"))
    record.setdefault("genotype", config["genotype_resolved"])
    record.setdefault("vocab", list(corpus.vocab))
    record.setdefault("ntokens", corpus.ntokens)
    for key in ("emsize", "nhid", "data", *LM_DROPOUTS):
        record.setdefault(key, config[key])
    return record


def _averaged(model: nn.Module, state: dict[str, Any]) -> None:
    """Swap in averaged SGD's running averages: the weights the run evaluated with."""
    opt_state = state.get("optimizer", {}).get("state", {})
    if not state.get("state", {}).get("asgd"):
        return
    params = [p for p in model.parameters() if p.requires_grad]  # the optimizer's order
    with torch.no_grad():
        for i, p in enumerate(params):
            ax = opt_state.get(i, {}).get("ax")
            if ax is not None:
                p.copy_(ax)


def _loaded(model: nn.Module, record: dict[str, Any], epoch: int | None,
            source: Path) -> LoadedRun:
    if record["task"] == "cnn":
        c, h, w = record["input_shape"]
        pre: ImagePreprocessing | Vocabulary = ImagePreprocessing(
            c, (h, w), tuple(record["mean"]), tuple(record["std"]), tuple(record["classes"]))
    else:
        pre = Vocabulary(tuple(record["vocab"]))
    if "arch" in record:
        from nasp.spaces.model import ModelArch

        arch: Any = ModelArch(record["arch"])
    else:
        arch = Genotype.from_dict(record["genotype"])
    return LoadedRun(model=model.eval(), preprocess=pre, task=record["task"],
                     genotype=arch, record=record, epoch=epoch, checkpoint=source)


def _own_search(run_dir: Path) -> tuple[nn.Module, dict[str, Any], int | None] | None:
    """(fixed network, record, epoch) of a ``nasp search --space FILE.py:FUNCTION`` run: the
    model its function builds, with the search's weights, under the arch it found (the weight
    step trained exactly the chosen candidates). ``None`` for any other folder."""
    from nasp.spaces.model import is_model_ref, read_own_search

    config = _run_config(run_dir) if run_dir.is_dir() else {}
    if config.get("command") != "search" or not is_model_ref(str(config.get("space", ""))):
        return None
    from nasp.data import load_image_dataset
    from nasp.export.record import own_record
    from nasp.models.fixed import fix
    from nasp.spaces.model import build_model

    space, arch, config = read_own_search(run_dir)
    state = read_checkpoint(run_dir / "checkpoint.pt", "cpu")
    ds = load_image_dataset(config["data"], config.get("data_root"))
    model = build_model(space, ds.channels, ds.num_classes)
    model.load_state_dict(state["model"])
    record = own_record(arch, space, ds.shape, ds.classes, ds.mean, ds.std, config["data"])
    return fix(model, arch), record, int(state["epoch"]) - 1


def sidecar_path(weights: Path) -> Path:
    """The JSON written beside a safetensors export."""
    return weights.with_suffix(".json")


def load_safetensors_export(path: str | os.PathLike) -> LoadedRun:
    """The network of a safetensors export (its .json or its .safetensors path)."""
    p = Path(path)
    json_path = p if p.suffix == ".json" else sidecar_path(p)
    if not json_path.is_file():
        raise NaspError(f"{json_path} does not exist",
                        "keep the .json that nasp export wrote beside the .safetensors file")
    from nasp.run_folder import read_json

    meta = read_json(json_path)
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise NaspError(f"{json_path} is not a nasp network description",
                        "pass the .json that nasp export --format safetensors wrote")
    tensors, _ = read_safetensors(json_path.parent / meta["weights"])
    for name, source in meta.get("tied", {}).items():
        tensors[name] = tensors[source]
    record = record_of(meta)
    model = build_network(record)
    model.load_state_dict(tensors)
    return _loaded(model, record, meta.get("epoch"), json_path)


def load(run: str | os.PathLike, last: bool = False, device: str = "cpu") -> LoadedRun:
    """The trained evaluation network of a ``nasp train`` run (CNN or language model), in eval
    mode on ``device``, with the weights of its best validation epoch (``best.pt``) or, with
    ``last=True``, of its last finished epoch (``checkpoint.pt``; a language model trained
    with averaged SGD gets the averaged weights, which its evaluations used). ``run`` may also
    be a checkpoint file, or the .json / .safetensors of a safetensors export."""
    dev = resolve_device(device)
    if Path(run).is_file() and Path(run).suffix in EXPORT_SUFFIXES:
        loaded = load_safetensors_export(run)
        loaded.model.to(dev)
        return loaded
    own = _own_search(Path(run))
    if own is not None:  # the fixed network of a search of the user's model: NASP trained it
        return _loaded(own[0].to(dev), own[1], own[2], Path(run) / "checkpoint.pt")
    path = find_checkpoint(run, last)
    state = read_checkpoint(path, "cpu")
    if "model" not in state:
        raise NaspError(f"{path} holds no network weights", "pass a `nasp train` run folder")
    record = complete_record(record_of(state), path.parent)
    model = build_network(record)
    model.load_state_dict(state["model"])
    if last and record["task"] == "lm":
        _averaged(model, state)
    epoch = state.get("epoch")
    if last and "state" in state:  # LM checkpoints keep the epoch count in their state
        epoch = state["state"].get("epoch")
    if last and epoch is not None:
        epoch = int(epoch) - 1  # checkpoint.pt counts finished epochs; best.pt the epoch index
    return _loaded(model.to(dev), record, epoch, path)
