"""Save/load round trips (members by folder, weights in JSON, nested fusions) and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fusion_helpers import member

from foundrec.config import RunConfig
from foundrec.data.split import Split
from foundrec.errors import FoundrecError
from foundrec.fusion import (
    BordaCount,
    MajorityVoting,
    Member,
    ReciprocalRankFusion,
    StackingFusion,
    WeightedScoreFusion,
    load_member,
    load_model,
)
from foundrec.models import ItemKNN, Popularity
from foundrec.models.base import UserBatch


@pytest.fixture(scope="module")
def run_folders(small_split: Split, tmp_path_factory) -> list[Path]:
    """Two run folders as `foundrec train` writes them (config.json, vocab/, model/)."""
    root = tmp_path_factory.mktemp("runs")
    folders = []
    for name, model in (("pop", Popularity()), ("knn", ItemKNN(neighbours=30))):
        run = root / name
        model.fit(small_split.train, small_split.n_items).save(run / "model")
        (run / "vocab").mkdir()
        (run / "vocab" / "items.txt").write_text("\n".join(map(str, range(small_split.n_items))))
        (run / "config.json").write_text(RunConfig(model=name).model_dump_json())
        folders.append(run)
    return folders


@pytest.mark.parametrize(
    "make",
    [
        lambda ms: WeightedScoreFusion(ms, "zscore", top_n=30),
        lambda ms: ReciprocalRankFusion(ms, k=10, top_n=30),
        lambda ms: BordaCount(ms, top_n=30),
        lambda ms: MajorityVoting(ms, k=5, top_n=30),
        lambda ms: StackingFusion(ms, negatives=5, top_n=30),
    ],
)
def test_round_trip_gives_the_same_scores(make, run_folders, small_split: Split, tmp_path) -> None:
    fusion = make([load_member(f) for f in run_folders])
    fusion.fit(small_split.train, small_split.n_items).fit_validation(small_split.valid)
    fusion.save(tmp_path / "fused")
    spec = json.loads((tmp_path / "fused" / "model.json").read_text())
    assert [m["path"] for m in spec["members"]] == [str(f / "model") for f in run_folders]
    again = load_model(tmp_path / "fused")
    assert type(again) is type(fusion) and again.get_params().keys() == fusion.get_params().keys()
    batch = UserBatch.from_sequences(small_split.test.history, 0, 50)
    assert torch.equal(again.score(batch), fusion.score(batch))


def test_fitted_weights_are_stored_as_json(run_folders, small_split: Split, tmp_path) -> None:
    fusion = WeightedScoreFusion([load_member(f) for f in run_folders], top_n=30)
    fusion.fit(small_split.train, small_split.n_items).fit_validation(small_split.valid)
    fusion.save(tmp_path / "w")
    fitted = json.loads((tmp_path / "w" / "model.json").read_text())["fitted"]
    assert fitted["weights"] == fusion.weights_ and sum(fitted["weights"]) == pytest.approx(1.0)


def test_a_fusion_is_a_member_of_another_and_unsaved_members_move_with_it(
    run_folders, small_split: Split, tmp_path
) -> None:
    inner = ReciprocalRankFusion([load_member(f) for f in run_folders], top_n=30)
    inner.fit(small_split.train, small_split.n_items)
    knn = ItemKNN(neighbours=10).fit(small_split.train, small_split.n_items)  # never saved on its own
    inner.save(tmp_path / "inner")
    outer = WeightedScoreFusion(
        [load_member(tmp_path / "inner", "rrf"), Member("knn10", knn)], "rank", [1.0, 0.5], top_n=20
    ).fit(small_split.train, small_split.n_items)
    outer.save(tmp_path / "outer")
    assert (tmp_path / "outer" / "members" / "knn10" / "model.json").is_file()
    shutil.move(tmp_path / "outer", tmp_path / "moved")  # relative member paths survive a move
    again = load_model(tmp_path / "moved")
    batch = UserBatch.from_sequences(small_split.valid.history, 0, 40)
    assert torch.equal(again.score(batch), outer.score(batch))


def test_members_with_different_catalogues_are_refused() -> None:
    fusion = ReciprocalRankFusion([member("a", torch.rand(3, 10)), member("b", torch.rand(3, 12))])
    with pytest.raises(FoundrecError, match="member 'b' scores 12 items but the data has 10"):
        fusion.fit(None, 10)


def test_runs_with_different_vocabularies_are_refused(run_folders, small_split: Split, tmp_path) -> None:
    other = tmp_path / "other"
    shutil.copytree(run_folders[1], other)
    (other / "vocab" / "items.txt").write_text("\n".join(f"x{i}" for i in range(small_split.n_items)))
    fusion = BordaCount([load_member(run_folders[0]), load_member(other)])
    with pytest.raises(FoundrecError, match="different item vocabularies: pop, other"):
        fusion.fit(small_split.train, small_split.n_items)


def test_runs_on_other_splits_are_refused(run_folders, small_split: Split, tmp_path) -> None:
    other = tmp_path / "temporal"
    shutil.copytree(run_folders[1], other)
    cfg = RunConfig.model_validate_json((other / "config.json").read_text())
    cfg.split.method = "temporal"
    (other / "config.json").write_text(cfg.model_dump_json())
    with pytest.raises(FoundrecError, match="different data or split settings"):
        BordaCount([load_member(run_folders[0]), load_member(other)]).fit(
            small_split.train, small_split.n_items
        )


def test_misuse_gives_clear_errors(tmp_path) -> None:
    members = [member("a", torch.rand(3, 10)), member("a", torch.rand(3, 10))]
    with pytest.raises(FoundrecError, match="names must be unique"):
        BordaCount(members).fit(None, 10)
    unfitted = BordaCount([member("a", torch.rand(3, 10))])
    with pytest.raises(FoundrecError, match="call fit"):
        unfitted.score(UserBatch(torch.tensor([0]), torch.tensor([1]), torch.tensor([0, 1])))
    bad = WeightedScoreFusion([member("a", torch.rand(3, 10))], normalization="softmax").fit(None, 10)
    with pytest.raises(FoundrecError, match="unknown normalization 'softmax'"):
        bad.score(UserBatch(torch.tensor([0]), torch.tensor([1]), torch.tensor([0, 1])))
    with pytest.raises(FoundrecError, match="no saved model"):
        load_model(tmp_path)
