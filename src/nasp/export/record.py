"""The network record: what rebuilding a trained evaluation network needs, without the data.

Train loops store these keys at the top level of ``best.pt`` and ``checkpoint.pt``; exports
copy them into their JSON. Only plain containers (str, int, float, bool, lists, dicts), so a
checkpoint stays readable with ``torch.load(..., weights_only=True)`` and a record is JSON as
it stands.

CNN: ``task``, ``genotype``, ``input_shape`` [C, H, W], ``num_classes``, ``classes``,
``mean`` and ``std`` (per channel, of images scaled to [0, 1]), ``channels``, ``layers``,
``auxiliary``, ``data``.
A user's own model (``--space FILE.py:FUNCTION``): ``arch`` and ``space`` (the function that
builds it) in place of ``genotype``, ``channels``, ``layers`` and ``auxiliary``.
LM: ``task``, ``genotype``, ``ntokens``, ``vocab`` (word of each id), ``emsize``, ``nhid``,
the five dropouts (``dropout``, ``dropouth``, ``dropoutx``, ``dropouti``, ``dropoute``),
``data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from nasp.errors import NaspError
from nasp.genotype import Genotype

CNN_KEYS = ("task", "genotype", "input_shape", "num_classes", "classes", "mean", "std",
            "channels", "layers", "auxiliary", "data")
OWN_KEYS = ("task", "arch", "space", "input_shape", "num_classes", "classes", "mean", "std",
            "data")
LM_DROPOUTS = ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute")
LM_KEYS = ("task", "genotype", "ntokens", "vocab", "emsize", "nhid", *LM_DROPOUTS, "data")


def cnn_record(genotype: Genotype, input_shape: Sequence[int], classes: Sequence[str],
               mean: Sequence[float], std: Sequence[float], channels: int, layers: int,
               auxiliary: bool, data: str) -> dict[str, Any]:
    """The record of an image classifier trained on ``data``."""
    return {"task": "cnn", "genotype": genotype.to_dict(),
            "input_shape": [int(s) for s in input_shape], "num_classes": len(classes),
            "classes": [str(c) for c in classes], "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "channels": int(channels), "layers": int(layers),
            "auxiliary": bool(auxiliary), "data": str(data)}


def own_record(arch: Any, space: str, input_shape: Sequence[int], classes: Sequence[str],
               mean: Sequence[float], std: Sequence[float], data: str) -> dict[str, Any]:
    """The record of a user model's fixed network (``space`` builds the model)."""
    return {"task": "cnn", "arch": dict(arch.to_dict() if hasattr(arch, "to_dict") else arch),
            "space": str(space), "input_shape": [int(s) for s in input_shape],
            "num_classes": len(classes), "classes": [str(c) for c in classes],
            "mean": [float(m) for m in mean], "std": [float(s) for s in std],
            "data": str(data)}


def lm_record(genotype: Genotype, vocab: Sequence[str], emsize: int, nhid: int,
              dropouts: dict[str, float], data: str) -> dict[str, Any]:
    """The record of a language model; ``dropouts`` holds the five ``LM_DROPOUTS``."""
    return {"task": "lm", "genotype": genotype.to_dict(), "ntokens": len(vocab),
            "vocab": [str(w) for w in vocab], "emsize": int(emsize), "nhid": int(nhid),
            **{k: float(dropouts[k]) for k in LM_DROPOUTS}, "data": str(data)}


def record_of(state: dict[str, Any]) -> dict[str, Any]:
    """The record keys of a checkpoint (or export JSON); ``task`` is inferred for checkpoints
    written before it was stored (CNN checkpoints held part of the record already)."""
    task = state.get("task") or ("cnn" if "input_shape" in state else "lm")
    return {k: state[k] for k in _keys(state, task) if k in state} | {"task": task}


def _keys(record: dict[str, Any], task: str | None) -> tuple[str, ...]:
    if "arch" in record:
        return OWN_KEYS
    return CNN_KEYS if task == "cnn" else LM_KEYS


def missing_keys(record: dict[str, Any]) -> list[str]:
    return [k for k in _keys(record, record.get("task")) if k not in record]


def build_network(record: dict[str, Any]) -> nn.Module:
    """A freshly initialised network of the record's shape (load the weights into it)."""
    if "arch" in record:  # a user model: its function builds it, the arch fixes it
        from nasp.models.fixed import fix
        from nasp.spaces.model import build_model

        model = build_model(record["space"], record["input_shape"][0], record["num_classes"])
        return fix(model, record["arch"], fresh=True)
    genotype = Genotype.from_dict(record["genotype"], "network record")
    if record["task"] == "cnn":
        from nasp.models.cnn import build_eval_model

        c, h, w = record["input_shape"]
        return build_eval_model(genotype, c, record["num_classes"], (h, w),
                                channels=record["channels"], layers=record["layers"],
                                auxiliary=record["auxiliary"])
    if record["task"] == "lm":
        from nasp.models.rnn import RNNModel

        return RNNModel(genotype, record["ntokens"], record["emsize"], record["nhid"],
                        **{k: record[k] for k in LM_DROPOUTS})
    raise NaspError(f"unknown task {record['task']!r} in a network record",
                    "the file was not written by nasp")
