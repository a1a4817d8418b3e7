"""One training run end to end: data -> split -> fit (validation picks the epoch) -> test once -> run folder.

Run folder: config.json (the resolved settings), vocab/{users,items}.txt, model/ (weights), metrics.json
({"valid": {...}, "test": {...}, "train_seconds", "params", ...}), epochs.json (training curve).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from foundrec.config import RunConfig
from foundrec.data.datasets import LoadedData, load_dataset
from foundrec.data.split import Split, make_split
from foundrec.errors import FoundrecError
from foundrec.eval.popularity import TopKPopularity, interaction_shares
from foundrec.eval.ranking import FullRankingEvaluator
from foundrec.models import MODELS, Recommender
from foundrec.models.sequential import SequentialRecommender
from foundrec.train.early_stopping import EpochLog, fit
from foundrec.train.pretrain import distributed, pretrain

VALID_METRIC = "ndcg@10"


@dataclass
class Prepared:
    data: LoadedData
    split: Split
    evaluator: FullRankingEvaluator


def prepare(cfg: RunConfig) -> Prepared:
    """Load and split the data and build the evaluator the config describes."""
    data = load_dataset(cfg.data)
    s = cfg.split
    split = make_split(data.interactions, s.method, s.valid_fraction, s.test_fraction, s.new_items)
    if len(split.valid) == 0 or len(split.test) == 0:
        raise FoundrecError(
            "the split left no users to validate or test; use a larger dataset or another split"
        )
    evaluator = FullRankingEvaluator(
        split.item_counts(),
        ks=tuple(cfg.eval.ks),
        exclude_seen=cfg.eval.exclude_seen,
        batch_size=cfg.eval.batch_size,
        tail_share=cfg.eval.tail_share,
        cold_max_history=cfg.eval.cold_max_history,
    )
    return Prepared(data, split, evaluator)


def build_model(cfg: RunConfig) -> Recommender:
    if cfg.model not in MODELS:
        raise FoundrecError(f"unknown model {cfg.model!r}; available: {', '.join(MODELS)}")
    params = dict(cfg.params)
    cls = MODELS[cfg.model]
    if "seed" in cls().get_params() and "seed" not in params:
        params["seed"] = cfg.train.seed
    try:
        return cls(**params)
    except TypeError as exc:
        allowed = ", ".join(cls().get_params())
        raise FoundrecError(
            f"bad parameter for model {cfg.model}: {exc}; its parameters are: {allowed}"
        ) from None


def train_run(
    cfg: RunConfig,
    out: Path | None = None,
    on_epoch: Callable[[EpochLog, int], None] | None = None,
    prepared: Prepared | None = None,
    on_model: Callable[[Recommender], None] | None = None,
) -> dict[str, Any]:
    """Train, validate, test once; write the run folder when `out` is given; return metrics."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    p = prepared or prepare(cfg)
    model = build_model(cfg)

    def validate(m: Recommender) -> float:
        return p.evaluator.evaluate(m, p.split.valid)[VALID_METRIC]

    if isinstance(model, SequentialRecommender):
        if model.text:
            model.set_item_text(item_text_embeddings(p.data, model.text))
        model.build(p.split.n_items, p.split.item_counts().astype(float))
        if on_model:
            on_model(model)
        result = pretrain(
            model,
            p.split.train,
            p.split.n_items,
            validate=validate,
            patience=cfg.train.patience,
            on_epoch=on_epoch,
            checkpoint_dir=_checkpoint_dir(out, cfg),
        )
        rank, _ = distributed()
        if rank != 0:  # every rank trained; one evaluates and writes
            return {}
    else:
        result = fit(model, p.split.train, p.split.n_items, validate, cfg.train.patience, on_epoch)
    metrics = evaluate_model(model, p)
    metrics.update(
        work=result.work,
        train_seconds=result.train_seconds,
        epochs=len(result.epochs),
        best_epoch=result.best_epoch,
        seconds_per_epoch=result.train_seconds / len(result.epochs)
        if result.epochs
        else result.train_seconds,
    )
    if out is not None:
        write_run(Path(out), cfg, p, model, metrics, [asdict(e) for e in result.epochs])
    return metrics


def _checkpoint_dir(out: Path | None, cfg: RunConfig) -> Path | None:
    """out/checkpoint, resumed only by a run with the same configuration."""
    if out is None:
        return None
    folder = Path(out) / "checkpoint"
    saved = folder / "config.json"
    if saved.is_file() and saved.read_text() != cfg.model_dump_json(indent=2):
        raise FoundrecError(
            f"{folder} holds a checkpoint of another configuration; choose another --out or delete it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    saved.write_text(cfg.model_dump_json(indent=2))
    return folder


def item_text_embeddings(data: LoadedData, text_model: bool | str = True):
    """Sentence embeddings of each item's text (title, genres, ...), cached on disk by models/text.py.

    `text_model` True means the packaged all-MiniLM-L6-v2; a string is any sentence-transformers model path.
    """
    from foundrec.models.text import DEFAULT_TEXT_MODEL, embed_texts, item_texts

    if data.items is None:
        raise FoundrecError(f"{data.source} has no item texts; run without model.text")
    model = text_model if isinstance(text_model, str) else DEFAULT_TEXT_MODEL
    return embed_texts(item_texts(data.items, data.interactions.items.ids), model)


def evaluate_model(model: Recommender, p: Prepared) -> dict[str, Any]:
    start = time.perf_counter()
    valid = p.evaluator.evaluate(model, p.split.valid)
    middle = time.perf_counter()
    # The test pass's top-K lists also give the popularity profile, so reports never rank again.
    profile = TopKPopularity(p.evaluator.item_counts, min(10, max(p.evaluator.ks)))
    test = p.evaluator.evaluate(model, p.split.test, on_top=profile)
    return {
        "model": model.name,
        "params": model.n_parameters(),
        "protocol": {
            "split": p.split.protocol,
            "ranking": "full ranking over all items, no sampled negatives",
            "exclude_seen": p.evaluator.exclude_seen,
            "ties": "stable: equal scores ordered by item index",
            "tail": f"targets outside the {p.evaluator.tail_share:.0%} most popular training items",
            "cold": f"users with at most {p.evaluator.cold_max_history} history items",
            "new": "targets with no training interaction (new items)",
        },
        "data": {"source": p.data.source, **p.data.interactions.stats()},
        "data_window": p.split.time_window(),  # what `foundrec finetune` checks against a test period
        "valid": valid,
        "test": test,
        "popularity": {
            "k": profile.k,
            "deciles": profile.shares(),
            "training_interactions": interaction_shares(p.evaluator.item_counts),
        },
        "eval_seconds": time.perf_counter() - middle,
        "valid_eval_seconds": middle - start,
    }


def write_run(
    out: Path, cfg: RunConfig, p: Prepared, model: Recommender, metrics: dict, epochs: list
) -> None:
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.model_dump_json(indent=2))
    p.data.interactions.users.save(out / "vocab" / "users.txt")
    p.data.interactions.items.save(out / "vocab" / "items.txt")
    model.save(out / "model")
    (out / "epochs.json").write_text(json.dumps(epochs, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))


def evaluate_run(run_dir: Path) -> dict[str, Any]:
    """Rebuild the split from the run's saved config and evaluate its saved model again."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise FoundrecError(
            f"{run_dir} is not a run folder (config.json missing); pass the --out of a train run"
        )
    cfg = RunConfig.model_validate_json(config_file.read_text())
    p = prepare(cfg)
    model = Recommender.load(run_dir / "model")
    saved_items = (run_dir / "vocab" / "items.txt").read_text().splitlines()
    if saved_items != p.data.interactions.items.ids:
        raise FoundrecError(f"the data behind {run_dir} changed since training (item vocabulary differs)")
    return evaluate_model(model, p)
