"""The command line: the metrics.json contract, re-evaluation, --json, and clear errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from foundrec.cli import app

runner = CliRunner()
SYNTH = ["--data", "synthetic", "--set", "data.synthetic.users=300", "--set", "data.synthetic.items=150"]


def test_train_writes_metrics_contract_and_evaluate_reproduces_it(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "bpr", *SYNTH, "--set", "params.epochs=2", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(result.stdout) == metrics
    for key in (
        "hr@10",
        "ndcg@10",
        "mrr",
        "recall@20",
        "precision@5",
        "f1@5",
        "coverage@10",
        "tail/ndcg@10",
        "cold/hr@10",
    ):
        assert key in metrics["test"] and key in metrics["valid"] or key.startswith("coverage")
    assert metrics["test"]["tail/users"] > 0 and metrics["test"]["cold/users"] > 0  # slices are populated
    assert metrics["epochs"] == 2 and metrics["params"] > 0 and metrics["train_seconds"] > 0
    profile = metrics["popularity"]  # where the test users' top-10 slots fall, by popularity decile
    assert profile["k"] == 10 and abs(sum(profile["deciles"]) - 1) < 1e-6 and len(profile["deciles"]) == 10
    config = json.loads((out / "config.json").read_text())
    config["eval"]["compile"] = True  # a key that runs saved by earlier versions carry
    (out / "config.json").write_text(json.dumps(config))
    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["test"] == metrics["test"]


def test_the_config_files_dataset_stands_without_data_option(tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[data]\ndataset = "synthetic"\n[data.synthetic]\nusers = 200\nitems = 100\n')
    result = runner.invoke(
        app, ["train", "pop", "--config", str(config), "--out", str(tmp_path / "r"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["source"].startswith("synthetic")


def test_train_from_a_csv_path_with_column_mapping(tmp_path) -> None:
    rows = ["uid,iid,ts"] + [f"u{u},i{(u * 7 + t) % 40},{t}" for u in range(60) for t in range(8)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    result = runner.invoke(
        app,
        [
            "train",
            "pop",
            "--data",
            str(tmp_path / "log.csv"),
            "--user-col",
            "uid",
            "--item-col",
            "iid",
            "--time-col",
            "ts",
            "--out",
            str(tmp_path / "r"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["users"] == 60


def test_data_stats_json(tmp_path) -> None:
    (tmp_path / "seq.txt").write_text("1 10 11 12\n2 10 13\n3\n")
    result = runner.invoke(
        app, ["data", "stats", str(tmp_path / "seq.txt"), "--json", "--set", "data.max_bad_fraction=0.5"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["users"], stats["items"], stats["interactions"], stats["bad_rows"]) == (2, 4, 5, 1)
    assert stats["bad_examples"] == [f"{tmp_path / 'seq.txt'}:3: missing field: no items after the user id"]


def test_errors_are_messages_not_tracebacks(tmp_path) -> None:
    cases = [
        (["train", "nope", *SYNTH], "unknown model 'nope'"),
        (["train", "pop", "--data", str(tmp_path / "missing.csv")], "file not found"),
        (["train", "pop", *SYNTH, "--set", "params.dim=3"], "bad parameter for model pop"),
        (["train", "pop", *SYNTH, "--set", "split.method=random"], "invalid configuration: split.method"),
        (["evaluate", str(tmp_path)], "not a run folder"),
        (["data", "stats", "no-such-dataset"], "file not found"),
        (["train", "sasrec", *SYNTH, "--set", "model.size=huge"], "unknown model size 'huge'"),
        (["train", "sasrec", *SYNTH, "--set", "model.text=true"], "has no item texts"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output


def test_new_items_split_reports_the_new_item_slice(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "pop", *SYNTH, "--set", "split.new_items=0.2", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["test"]["new/users"] > 0
    assert metrics["test"]["new/hr@10"] == 0.0  # popularity never recommends an item it never saw
    assert "held out of training" in metrics["protocol"]["split"]
