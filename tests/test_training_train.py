"""Training end to end on 16 tiny patches: both recipes, resume, leave-one-domain-out, weights from a file,
and the ``train`` / ``evaluate`` / ``classify`` commands. Architectures are tiny and run one short epoch:
these tests check plumbing, not accuracy."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import report_values
from PIL import Image

from wsi_amf.bundle import load_bundle
from wsi_amf.cli.train import classify_cmd, evaluate_cmd, train_cmd
from wsi_amf.datasets import load_dataset
from wsi_amf.ensemble import Ensemble
from wsi_amf.errors import OptionError
from wsi_amf.stats import best_balanced_accuracy_threshold
from wsi_amf.training import RecipeChanges, train, trainer

CHANGES = RecipeChanges(arch="resnet10t", img_size=32, epochs=1, folds=2, batch_size=8)
TINY = {"changes": CHANGES, "device": "cpu", "quiet": True}


def tiny(**changes: Any) -> dict[str, Any]:
    """``TINY`` with more recipe changes."""
    return {**TINY, "changes": replace(CHANGES, **changes)}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two OpenMP threads
    next to another busy process can be 50x slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_csv(tmp_path_factory.mktemp("tiny"))


def make_data_csv(root: Path) -> Path:
    """16 patches, 8 source slides (one atypical + one normal figure each), 2 domains of 4 slides."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        atypical = i % 2
        img = rng.integers(150, 230, (128, 128, 3), dtype=np.uint8)
        img[44:84, 44:84] = (40, 20, 90) if atypical else (120, 80, 160)
        path = root / "patches" / f"p{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        rows.append([f"patches/{path.name}", "AMF" if atypical else "NMF", f"slide{i // 2}", "A" if i < 8 else "B"])
    table = root / "labels.csv"
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "group", "domain"], *rows])
    return table


@pytest.fixture(scope="module")
def cli_bundle(data_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("cli") / "bundle"
    args = [str(data_csv), "--out", str(out), "--recipe", "convnextv2", "--arch", "convnextv2_atto", "--img-size", "32",
            "--epochs", "1", "--folds", "2", "--batch-size", "8", "--device", "cpu", "--seed", "3", "--precision", "int8", "--threads", "1",
            "--augment", "hflip,vflip,shift_scale_rotate,stain"]
    result = CliRunner().invoke(train_cmd, args)
    return out, result


def test_cli_train_convnextv2(cli_bundle: tuple[Path, Any]) -> None:
    out, result = cli_bundle
    assert result.exit_code == 0, result.output
    assert "2 members (folds trained: 2, resumed from an interrupted run: 0)" in result.output
    assert "out-of-fold: balanced accuracy" in result.output
    assert not (out / ".folds").exists()  # removed once the run finished


def test_convnextv2_bundle_loads_and_predicts(cli_bundle: tuple[Path, Any]) -> None:
    out, _ = cli_bundle
    bundle = load_bundle(out)
    cfg = bundle.config
    assert cfg.architecture == "convnextv2_atto" and cfg.members == ("member-0.safetensors", "member-1.safetensors")
    assert (cfg.input_size, cfg.patch_size, cfg.crop_fraction) == (32, 128, 0.6)
    prov = cfg.provenance
    assert prov["recipe"] == "convnextv2" and prov["hyperparameters"]["seed"] == 3
    assert prov["hyperparameters"]["loss"] == "bce" and prov["hyperparameters"]["optimizer"] == "adam"
    assert prov["hyperparameters"]["augment"] == ["hflip", "vflip", "shift_scale_rotate", "stain"]
    assert prov["seeds"]["folds"] == [3, 4]
    assert prov["data"]["n"] == 16 and prov["data"]["grouped_by"] == "group"
    assert {"started", "finished", "software"} <= set(prov)
    assert set(cfg.metrics["cv_oof"]) >= {"balanced_accuracy", "roc_auc", "threshold"}
    p = Ensemble(bundle, device="cpu", engine="torch").predict(np.zeros((3, 128, 128, 3), np.uint8))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    # --precision int8: the large weights are int8 with their scales, and nothing is float32.
    import torch
    from safetensors.torch import load_file

    stored = load_file(str(out / "member-0.safetensors"))
    dtypes = {str(v.dtype) for v in stored.values()}
    assert "torch.int8" in dtypes and "torch.float32" in dtypes and any(k.endswith("::scale") for k in stored)
    assert all(v.dtype != torch.float32 for k, v in stored.items() if not k.endswith("::scale"))
    # The stored threshold is the best balanced accuracy on the out-of-fold predictions.
    rows = read_rows(out / "oof_predictions.csv")
    assert len(rows) == 16 and {r["fold"] for r in rows} == {"1", "2"}
    y = np.array([r["label"] == "atypical" for r in rows], dtype=int)
    oof = np.array([float(r["p_atypical"]) for r in rows])
    assert cfg.threshold == pytest.approx(best_balanced_accuracy_threshold(y, oof), abs=1e-5)
    m = json.loads((out / "metrics.json").read_text())
    for key in ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy", "per_domain", "at_0.5", "at_otsu"):
        assert key in m
    assert set(m["per_domain"]["domain"]) == {"A", "B"}
    assert [f["fold"] for f in m["per_fold"]] == [1, 2]
    shown = report_values(out / "report.html")  # the training report shows the same numbers
    for f in m["per_fold"]:
        assert shown[f"fold.{f['fold']}.balanced_accuracy"] == str(f["balanced_accuracy"])
    for value, sub in m["per_domain"]["domain"].items():
        assert shown[f"domain.domain.{value}.sensitivity"] == str(sub["sensitivity"])
    assert shown["overall.balanced_accuracy"] == str(m["balanced_accuracy"]) and shown["n"] == "16"
    # What the ratio estimators need: the out-of-fold figures, their rates at the threshold, a calibration map.
    q = cfg.quantification
    assert q["figures"]["label"] == "".join("1" if v else "0" for v in y)
    np.testing.assert_allclose(q["figures"]["score"], oof, atol=1e-5)
    called = oof >= cfg.threshold
    assert (q["rates"]["tp"], q["rates"]["fn"]) == (int((called & (y == 1)).sum()), int((~called & (y == 1)).sum()))
    assert (q["rates"]["fp"], q["rates"]["tn"]) == (int((called & (y == 0)).sum()), int((~called & (y == 0)).sum()))
    assert q["calibration"]["method"] in {"platt", "temperature", "isotonic"} and "stain" in q
    # Groups never straddle folds, and bundle.json records the fold of each.
    fold_of = {}
    for r in rows:
        assert fold_of.setdefault(r["group"], r["fold"]) == r["fold"]
    assert cfg.fold_groups == {g: int(k) - 1 for g, k in fold_of.items()} and cfg.fold_group_by == "group"


class Interrupted(Exception):
    pass


def test_resume_after_an_interrupted_fold(data_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer.train_fold
    calls: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["desc"])
        if fail_on == len(calls):
            raise Interrupted("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_fold", counting)
    out = tmp_path / "b"
    fail_on = 2
    with pytest.raises(Interrupted):
        train(data_csv, out, **TINY)
    assert calls == ["all data fold 1/2", "all data fold 2/2"]
    assert (out / ".folds" / "all" / "fold-1.json").is_file()
    assert not (out / ".folds" / "all" / "fold-2.json").exists()

    with pytest.raises(OptionError, match=r"another configuration \(recipe.epochs 1 -> 2\)"):
        train(data_csv, out, **tiny(epochs=2))

    calls.clear()
    fail_on = 0
    result = train(data_csv, out, **TINY)
    assert calls == ["all data fold 2/2"]  # fold 1 was not trained again
    assert (result.folds_trained, result.folds_resumed) == (1, 1)
    assert [f["resumed"] for f in result.metrics["per_fold"]] == [True, False]
    assert len(result.bundle.config.members) == 2
    assert not (out / ".folds").exists()

    with pytest.raises(OptionError, match="already holds a trained bundle"):
        train(data_csv, out, **TINY)


def test_efficientvit_recipe_leave_one_domain_out(data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = train(data_csv, out, recipe="efficientvit", cv="loco", domain_column="domain", **tiny(arch="efficientvit_b0"))
    hp = result.bundle.config.provenance["hyperparameters"]
    assert (hp["loss"], hp["sampler"], hp["optimizer"]) == ("focal", "balanced", "adamw")
    assert "stain" in hp["augment"]
    p = Ensemble(load_bundle(out), device="cpu", engine="torch").predict(load_dataset(data_csv).images[:4])
    assert p.shape == (4,) and np.isfinite(p).all()

    assert result.folds_trained == 6  # 2 folds without A, 2 without B, 2 on everything
    loco = result.metrics["loco"]
    assert loco["column"] == "domain" and set(loco["domains"]) == {"A", "B"}
    for value, m in loco["domains"].items():
        assert m["n_heldout"] == 8 and m["n_train"] == 8
        assert {"balanced_accuracy", "roc_auc", "at_0.5", "at_otsu", "inner_oof"} <= set(m)
        assert load_bundle(out / "loco" / value).config.provenance["heldout"] == {"domain": value}
    rows = read_rows(out / "loco_predictions.csv")
    assert sorted(r["heldout_domain"] for r in rows) == ["A"] * 8 + ["B"] * 8
    assert set(result.bundle.config.metrics["loco"]) == {"A", "B"}
    shown = report_values(result.files["report"])
    for value, m in loco["domains"].items():
        assert shown[f"loco.{value}.roc_auc"] == ("" if m["roc_auc"] is None else str(m["roc_auc"]))


def test_weights_from_a_local_file(data_csv: Path, tmp_path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import load_file, save_file

    torch.manual_seed(123)
    source = timm.create_model("resnet10t", pretrained=False, num_classes=1)
    weights = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    result = train(data_csv, tmp_path / "b", **tiny(folds=2, lr=1e-12, pretrained_file=str(weights)))
    assert result.bundle.config.provenance["weights"] == f"file:{weights.resolve()}"
    member = load_file(str(tmp_path / "b" / "member-0.safetensors"))
    # An lr of 1e-12 leaves the loaded convolution weights where the file put them.
    torch.testing.assert_close(member["conv1.0.weight"], source.state_dict()["conv1.0.weight"], atol=1e-6, rtol=0)


def test_option_errors(data_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="--arch 'no_such_net'"):
        train(data_csv, tmp_path / "a", **tiny(arch="no_such_net"))
    with pytest.raises(OptionError, match="--cv 'bogus'"):
        train(data_csv, tmp_path / "b", cv="bogus", **TINY)
    with pytest.raises(OptionError, match="--domain-column Tumor"):
        train(data_csv, tmp_path / "c", cv="loco", domain_column="Tumor", **TINY)
    with pytest.raises(OptionError, match="--pretrained-file .*no such file"):
        train(data_csv, tmp_path / "d", **tiny(pretrained_file=str(tmp_path / "missing.pth")))
    with pytest.raises(OptionError, match="unknown training option 'colour'"):
        RecipeChanges.from_mapping({"colour": "red", "epochs": 1})
    result = CliRunner().invoke(train_cmd, [str(data_csv), "--out", str(tmp_path / "f"), "--epochs", "0"])
    assert result.exit_code == 2 and "--epochs" in result.output
    result = CliRunner().invoke(train_cmd, [str(data_csv), "--out", str(tmp_path / "g"), "--augment", "blur"])
    assert result.exit_code == 2 and "Error: --augment ('blur',): known operations" in result.output


def test_cli_evaluate(cli_bundle: tuple[Path, Any], data_csv: Path, tmp_path: Path) -> None:
    bundle, _ = cli_bundle
    result = CliRunner().invoke(
        evaluate_cmd, [str(data_csv), "--out", str(tmp_path / "ev"), "--model", str(bundle), "--engine", "torch", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "16 patches (8 atypical): balanced accuracy" in result.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy", "per_domain"):
        assert key in m
    assert m["threshold"] == pytest.approx(load_bundle(bundle).config.threshold)
    assert m["at_otsu"]["threshold"] == m["thresholds"]["otsu"]
    assert set(m["per_domain"]["domain"]) == {"A", "B"}
    assert len(read_rows(tmp_path / "ev" / "predictions.csv")) == 16
    assert Image.open(tmp_path / "ev" / "roc.png").format == "PNG"
    shown = report_values(tmp_path / "ev" / "report.html")
    assert shown["overall.specificity"] == str(m["specificity"]) and shown["n_atypical"] == "8"
    assert set(m["per_domain"]["domain"]) == {k.split(".")[2] for k in shown if k.startswith("domain.domain.")}
    ratio = m["ratio"]["overall"]  # the true share and each estimator's estimate of it
    assert ratio["true_share"] == 0.5 and ratio["n"] == 16 and set(ratio["estimators"]) == {"cc", "acc", "pcc", "pacc", "em"}
    for r in ratio["estimators"].values():
        assert r["error"] == pytest.approx(r["estimate"] - 0.5) and r["ci95"][0] <= r["estimate"] <= r["ci95"][1]
    assert set(m["ratio"]["per_domain"]["domain"]) == {"A", "B"}
    aucs = load_bundle(bundle).config.metrics["per_fold_roc_auc"]  # per fold: the bundle's own cross-validation
    assert [shown[f"bundle_fold.{k + 1}.roc_auc"] for k in range(len(aucs))] == ["" if a is None else str(a) for a in aucs]


def test_cli_evaluate_default_model_and_errors(cli_bundle: tuple[Path, Any], data_csv: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import wsi_amf.bundle

    monkeypatch.setattr(wsi_amf.bundle, "default_bundle_path", lambda: cli_bundle[0])
    result = CliRunner().invoke(evaluate_cmd, [str(data_csv), "--out", str(tmp_path / "ev"), "--engine", "torch"])
    assert result.exit_code == 0, result.output
    missing = CliRunner().invoke(evaluate_cmd, [str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1
    assert missing.output.strip().startswith("Error: dataset") and "Traceback" not in missing.output


def test_cli_classify(cli_bundle: tuple[Path, Any], data_csv: Path, tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((128, 128, 3), v, dtype=np.uint8)) for v in (50, 200)]
    pages[0].save(tmp_path / "stack.tiff", save_all=True, append_images=pages[1:])
    out = tmp_path / "preds.csv"
    args = [str(data_csv.parent / "patches"), str(tmp_path / "stack.tiff"), "--out", str(out), "--model", str(cli_bundle[0]),
            "--engine", "torch", "--threshold", "0.5"]
    result = CliRunner().invoke(classify_cmd, args)
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "p_atypical", "label"]
    assert len(rows) == 18
    assert rows[-1]["path"].endswith("stack.tiff#2")
    assert all(r["label"] == ("atypical" if float(r["p_atypical"]) >= 0.5 else "normal") for r in rows)
    bad = CliRunner().invoke(classify_cmd, [str(data_csv), "--out", str(out), "--model", str(cli_bundle[0])])
    assert bad.exit_code == 1 and "not an image file" in bad.output


def test_commands_are_registered_on_the_main_group() -> None:
    from wsi_amf.cli import main

    for name in ("train", "evaluate", "classify"):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "--out" in result.output


def test_cli_train_refuses_fp16_with_another_precision(data_csv: Path, tmp_path: Path) -> None:
    args = [str(data_csv), "--out", str(tmp_path / "b"), "--fp16", "--precision", "int8"]
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code == 2 and "--fp16 and --precision int8 contradict each other" in result.output
    assert not (tmp_path / "b").exists()
