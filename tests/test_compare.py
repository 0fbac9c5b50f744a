"""`resvae compare`: variants, the report files and resuming."""

import csv
import json
import math
import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras_resvae.cli.main import main

from keras_resvae import compare
from keras_resvae.compare import (
    DEFAULT_VARIANTS,
    combine_repeats,
    parse_variant,
    variant_names,
)

TINY = ["--epochs", 1, "--limit", 64, "--width", 0.125, "--latent-dim", 4, "--batch-size", 32]
TINY += ["--eval-images", 32, "--iwae-samples", 2]


def invoke(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)], catch_exceptions=False)


def test_variant_names_map_to_fit_options():
    assert parse_variant("resnet18-nobn-skip") == {
        "arch": "resnet18",
        "use_batch_norm": False,
        "skip": True,
        "pooling": None,
        "center": False,
    }
    assert parse_variant("resnet18-nobn-flat")["pooling"] == "flatten"
    assert parse_variant("basic-tanh")["center"] is True
    assert parse_variant("resnet50-bn")["use_batch_norm"] is True
    assert variant_names(["basic", "resnet18-nobn"], center=True) == [
        "basic",
        "resnet18-nobn",
        "basic-tanh",
        "resnet18-nobn-tanh",
    ]
    # The study's five, then the two that go past it (issue 12).
    assert DEFAULT_VARIANTS[5:] == ("resnet18-nobn-flat", "hvae")
    for name in DEFAULT_VARIANTS:
        parse_variant(name)


def test_a_folder_that_is_not_a_report_is_left_untouched(tmp_path):
    (tmp_path / "results.md").write_text("my own results")
    result = invoke("--out", tmp_path, "--variants", "basic")
    assert result.exit_code == 1 and "is not a resvae compare report" in result.output
    assert os.listdir(tmp_path) == ["results.md"]
    assert (tmp_path / "results.md").read_text() == "my own results"


@pytest.mark.parametrize(
    "variants, message",
    [
        ("resnet19", "unknown architecture 'resnet19'"),
        ("resnet18-nobatchnorm", "unknown flag 'nobatchnorm'"),
        ("basic,basic", "listed twice"),
    ],
)
def test_bad_variants_are_one_line(tmp_path, variants, message):
    result = invoke("--out", tmp_path, "--variants", variants)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


@pytest.mark.slow
def test_compare_writes_every_file_and_resumes(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    def in_this_process(*args, **kwargs):
        raise AssertionError("compare trains each run in a child process by default")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(compare, "fit_run", in_this_process)
    out = tmp_path / "report"
    # One variant and its --center twin: two run processes.
    result = invoke("--out", out, "--variants", "resnet18-nobn-skip", "--center", "--fid", *TINY)
    assert result.exit_code == 0, result.output
    # The children's progress bars reach this process's output.
    assert result.output.count("━━") >= 2, result.output
    assert "FID/KID skipped" in result.output and "--inception-weights" in result.output

    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    names = ["resnet18-nobn-skip", "resnet18-nobn-skip-tanh"]
    assert [row["variant"] for row in rows] == names
    for row in rows:
        for key in ("seconds_per_epoch", "train_loss", "val_loss", "mse", "psnr", "ssim", "blur"):
            assert math.isfinite(float(row[key])), (row["variant"], key)
        for key in ("bits_per_dim_8bit", "iwae_bits_per_dim_8bit"):
            assert math.isfinite(float(row[key])), (row["variant"], key)
        assert 0 <= int(row["active_units"]) <= 4 and int(row["parameters"]) > 0
    assert rows[0]["skip"] == "True" and rows[0]["center"] == "False"
    assert rows[1]["center"] == "True"
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert "resvae compare --out" in table and "--variants resnet18-nobn-skip " in table
    assert " --center " in table and " --fid" in table and " --epochs 1 " in table
    for figure in ("reconstructions.png", "samples.png", "curves.png", "spectra.png"):
        assert (out / figure).read_bytes().startswith(b"\x89PNG"), figure

    # Again on the same folder: the finished run is reused, not retrained.
    result = invoke("--out", out, "--variants", "resnet18-nobn-skip", *TINY)
    assert result.exit_code == 0, result.output
    with open(out / "results.csv") as file:
        assert [row["variant"] for row in csv.DictReader(file)] == ["resnet18-nobn-skip"]
    with open(out / "runs" / "resnet18-nobn-skip" / "history.csv") as file:
        assert len(list(csv.DictReader(file))) == 1
    result = invoke("--out", out, "--variants", "resnet18-nobn-skip", *TINY[:-4], "--latent-dim", 8)
    assert result.exit_code == 1 and "trained with other settings" in result.output
    assert np.isfinite(float(rows[0]["mse"]))


def test_each_run_is_evaluated_once_with_the_comparison_s_settings(tmp_path, monkeypatch):
    from keras_resvae import runs

    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return evaluate_vae(*args, **kwargs)

    evaluate_vae = runs.evaluate_vae
    monkeypatch.setattr(runs, "evaluate_vae", counted)
    out = tmp_path / "report"
    # In this process, where the count is kept.
    result = invoke("--out", out, "--variants", "basic", "--in-process", *TINY)
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0]["max_images"] == 32
    run = out / "runs" / "basic"
    # The run's own metrics are the comparison's: 32 images, IWAE with K = 2.
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads((run / "evaluation.json").read_text())
    assert metrics["num_images"] == 32 and metrics["iwae_samples"] == 2
    with pytest.raises(ValueError, match=r"Unknown evaluation options \['iwae'\]"):
        runs.fit_run(str(tmp_path / "other"), evaluation={"iwae": 2}, epochs=1)
    assert not (tmp_path / "other").exists()


def test_a_hierarchical_vae_s_row_has_its_groups(tmp_path):
    out = tmp_path / "report"
    # --num-scales and --groups-per-scale set hvae's groups and leave the flat
    # variants as they are.
    result = invoke(
        "--out", out, "--variants", "basic,hvae", "--num-scales", 2, "--groups-per-scale", 2,
        "--in-process", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(out / "results.csv") as file:
        basic_row, row = list(csv.DictReader(file))
    assert basic_row["variant"] == "basic" and row["variant"] == "hvae"
    assert not basic_row.get("kl_group1")
    config = json.loads((out / "runs" / "hvae" / "config.json").read_text())
    assert config["num_scales"] == 2 and config["groups_per_scale"] == 2
    metrics = json.loads((out / "runs" / "hvae" / "evaluation.json").read_text())
    groups = len(metrics["group_sizes"])
    assert groups == 4
    with open(out / "runs" / "hvae" / "history.csv") as file:
        last = list(csv.DictReader(file))[-1]
    for index in range(1, groups + 1):
        assert float(row[f"kl_group{index}"]) == pytest.approx(float(last[f"val_kl_group{index}"]))
        assert (
            int(row[f"active_units_group{index}"]) == metrics["active_units_per_group"][index - 1]
        )
        assert int(row[f"group{index}_size"]) == metrics["group_sizes"][index - 1]
    table = (out / "results.md").read_text()
    assert "| KL per group (nats) | active units per group |" in table
    cells = " / ".join(
        f"{active:,}/{size:,}"
        for active, size in zip(metrics["active_units_per_group"], metrics["group_sizes"])
    )
    assert cells in table and "each latent group's KL term" in table


@pytest.mark.parametrize("option", ["--num-scales", "--groups-per-scale"])
def test_hierarchy_options_without_a_hierarchical_variant_are_refused(tmp_path, option):
    result = invoke("--out", tmp_path / "report", "--variants", "basic", option, 2)
    assert result.exit_code == 1
    assert "add hvae to the variants" in result.output
    assert not (tmp_path / "report").exists()


def test_combine_repeats_means_what_varies_and_keeps_what_does_not():
    rows = [
        {"variant": "basic", "parameters": 10, "mse": 0.004, "ssim": 0.8, "skip": False},
        {"variant": "basic", "parameters": 10, "mse": 0.008, "ssim": 0.9, "skip": False},
    ]
    combined = combine_repeats(rows)
    assert combined["variant"] == "basic" and combined["parameters"] == 10
    assert combined["skip"] is False and combined["repeats"] == 2
    assert combined["mse"] == pytest.approx(0.006) and combined["ssim"] == pytest.approx(0.85)
    assert combined["mse_std"] == pytest.approx(np.std([0.004, 0.008], ddof=1))
    assert combine_repeats(rows[:1]) == rows[0]


@pytest.mark.slow
def test_repeats_train_each_variant_with_consecutive_seeds(tmp_path):
    out = tmp_path / "report"
    result = invoke(
        "--out", out, "--variants", "basic", "--repeats", 2, "--seed", 3, "--in-process", *TINY
    )
    assert result.exit_code == 0, result.output
    evaluations = []
    for run, seed in (("basic", 3), ("basic-seed4", 4)):
        assert json.loads((out / "runs" / run / "config.json").read_text())["seed"] == seed
        evaluations.append(json.loads((out / "runs" / run / "evaluation.json").read_text()))
    with open(out / "results.csv") as file:
        (row,) = list(csv.DictReader(file))
    mses = [evaluation["mse"] for evaluation in evaluations]
    assert mses[0] != mses[1]  # other initial weights, other result
    assert float(row["mse"]) == pytest.approx(np.mean(mses))
    assert float(row["mse_std"]) == pytest.approx(np.std(mses, ddof=1))
    assert row["repeats"] == "2"
    assert " ± " in (out / "results.md").read_text()
