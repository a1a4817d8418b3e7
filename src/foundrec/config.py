"""Typed run settings, read from TOML and overridable with `--set key=value`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundrec.errors import FoundrecError

T = TypeVar("T", bound=BaseModel)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMap(Settings):
    """Which source column holds which field; names for headered files, positions ("0", "1") otherwise."""

    user: str = "user"
    item: str = "item"
    timestamp: str | None = None
    rating: str | None = None
    label: str | None = None
    event: str | None = None
    features: list[str] = Field(default_factory=list)


class DataConfig(Settings):
    """Where interactions come from and how they are cleaned."""

    dataset: str | None = None  # registry name (beauty, ml-100k, synthetic, ...) or None with `path`
    path: str | None = None
    format: Literal["csv", "tsv", "parquet", "jsonl", "seqlines"] | None = None
    delimiter: str | None = None  # any string, e.g. "::" for MovieLens 1M; default from format
    header: bool | None = None  # default: True for csv/tsv unless `names` is given
    names: list[str] | None = None  # column names for a file without a header line
    encoding: str = "utf-8"
    columns: ColumnMap = Field(default_factory=ColumnMap)
    max_bad_fraction: float = 0.01  # fail when more rows than this are malformed
    dedup: Literal["exact", "first", "last", "none"] = "exact"
    min_rating: float | None = None  # keep only interactions rated at least this
    kcore: int = 0  # 0: off; k: keep users and items with at least k interactions
    data_dir: str | None = None
    synthetic: dict[str, Any] = Field(default_factory=dict)  # SyntheticConfig fields


class SplitConfig(Settings):
    method: Literal["loo", "temporal"] = "loo"
    valid_fraction: float = 0.1  # temporal: share of events (by time) in validation
    test_fraction: float = 0.1
    new_items: float = 0.0  # > 0: this share of items is held out of training (data/split.py, cold start)


class EvalConfig(Settings):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    exclude_seen: bool = True
    batch_size: int | None = None  # users per scoring block; None: about 16 MB of scores per block
    tail_share: float = 0.2  # items outside the `tail_share` most popular are long-tail
    cold_max_history: int = 5

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        """Runs saved before the compiled kernels became the only ranking path carry `compile`: ignored."""
        return {k: v for k, v in data.items() if k != "compile"} if isinstance(data, dict) else data


class TrainConfig(Settings):
    seed: int = 2026
    patience: int = 5  # epochs without validation NDCG@10 gain before stopping
    threads: int | None = None  # torch threads; None keeps torch's default


class RunConfig(Settings):
    model: str = "pop"
    params: dict[str, Any] = Field(default_factory=dict)  # the model's own hyperparameters
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


class ModelSpec(Settings):
    """One model of a pipeline: its registry name and hyperparameters."""

    model: str
    params: dict[str, Any] = Field(default_factory=dict)


class FusionSettings(Settings):
    methods: list[str] = Field(default_factory=lambda: ["weighted", "rrf", "borda", "voting", "stacking"])
    candidates: int = 200  # each member's top-N per user; fusion never needs a dense score matrix
    normalization: Literal["minmax", "rank", "zscore"] = "minmax"  # per-user, for weighted fusion


class TaskSettings(Settings):
    """A business task fine-tuned from the pretrained model (`foundrec finetune`'s options)."""

    task: Literal["ctr", "rating"] = "ctr"
    mode: Literal["full", "lora", "adapter", "probe"] = "full"
    protocol: Literal["temporal", "tallrec"] = "temporal"
    shots: int | None = None
    epochs: int = 15
    lr: float = 3e-3  # new weights
    backbone_lr: float = 3e-4  # pretrained weights
    batch_size: int = 64
    seed: int = 0
    lora_rank: int = 4
    # The GAUC operating point is rank_weight = 2 with user_rate and bias_logreg (docs/benchmarks.md).
    rank_weight: float = 0.0
    user_rate: bool = False
    bias_logreg: bool = False


class PipelineConfig(Settings):
    """`foundrec pipeline CONFIG.toml`: data, pretrain, baselines, fuse, evaluate, report, bundle."""

    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    pretrain: ModelSpec = Field(default_factory=lambda: ModelSpec(model="sasrec"))
    baselines: dict[str, ModelSpec] = Field(default_factory=dict)  # member name -> model
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    task: TaskSettings | None = None  # fine-tune for this task after pretraining (needs a temporal split)

    def run_config(self, spec: ModelSpec) -> RunConfig:
        return RunConfig(
            model=spec.model,
            params=spec.params,
            data=self.data,
            split=self.split,
            eval=self.eval,
            train=self.train,
        )


def parse_value(text: str) -> Any:
    """A TOML literal (number, bool, list, quoted string) or, failing that, the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str], shorthand: bool = True) -> dict[str, Any]:
    """Set dotted keys (`params.dim=64`, `data.kcore=5`) in a nested dict; `model.X` means `params.X`."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FoundrecError(f"--set expects key=value, got {item!r}")
        if shorthand and key.strip().startswith("model."):
            key = "params." + key.strip().removeprefix("model.")
        node = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FoundrecError(f"--set {key}: {part!r} is not a section")
        node[leaf] = parse_value(value.strip())
    return raw


def load_config(path: Path | None = None, overrides: list[str] | None = None, **base: Any) -> RunConfig:
    """Defaults, then the TOML file, then `base` (CLI options), then `--set` overrides."""
    raw = _read_toml(path)
    for dotted, value in base.items():
        if value is not None:
            apply_overrides(raw, [f"{dotted.replace('__', '.')}={json.dumps(value)}"])
    apply_overrides(raw, overrides or [])
    return _validate(RunConfig, raw)


def load_pipeline_config(path: Path, overrides: list[str] | None = None) -> PipelineConfig:
    """A pipeline TOML with `--set` overrides (`pretrain.params.dim=128`, `train.seed=1`)."""
    # no `model.X` shorthand here: a pipeline has several models
    return _validate(PipelineConfig, apply_overrides(_read_toml(path), overrides or [], shorthand=False))


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FoundrecError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FoundrecError(f"config file {path} is not valid TOML: {exc}") from None


def _validate(cls: type[T], raw: dict[str, Any]) -> T:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise FoundrecError(f"invalid configuration: {problems}") from None
