"""Model bundles are checked when they load, before any slide is read, on every engine.

``bundle.json`` records each member's SHA-256 (``member_sha256``): a member whose bytes changed (a flipped
byte, a block of random bytes inside its tensor data, a replaced file) is refused. Weights that hold NaN or
infinite values (a BatchNorm running_var, say) are refused too, hashes or not, and so is an int8 member
whose tensor lost its scale. Each case runs the real CLI
and must end with one ``Error:`` line naming the member, exit code 1, and no output folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wsi_amf.bundle import BUNDLE_FILE, ModelBundle, default_bundle_path, load_bundle, save_bundle
from wsi_amf.cli import main

ENGINES = ("torch", "onnx", "openvino")


# ------------------------------------------------------------------------------------------ helpers


def copy_bundle(bundle: ModelBundle, dest: Path) -> Path:
    return Path(shutil.copytree(bundle.path, dest))


def tensors(member: Path) -> dict[str, dict]:
    """The safetensors header: name -> {dtype, shape, data_offsets}, offsets made absolute in the file."""
    data = member.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    for entry in header.values():
        entry["data_offsets"] = [8 + n + o for o in entry["data_offsets"]]
    return header


def overwrite(member: Path, offset: int, content: bytes) -> None:
    data = bytearray(member.read_bytes())
    assert offset + len(content) <= len(data)
    data[offset : offset + len(content)] = content
    member.write_bytes(bytes(data))


def largest_tensor(member: Path) -> tuple[int, int]:
    begin, end = max((e["data_offsets"] for e in tensors(member).values()), key=lambda o: o[1] - o[0])
    return begin, end


def flip_one_byte(member: Path) -> None:
    """The lowest mantissa byte of a float32 in the middle of the largest tensor: a tiny change, still finite."""
    begin, end = largest_tensor(member)
    at = begin + ((end - begin) // 2) // 4 * 4  # little-endian: the first byte of a float32 is its lowest
    overwrite(member, at, bytes([member.read_bytes()[at] ^ 0x01]))


def random_block(member: Path, size: int = 200_000) -> None:
    begin, end = largest_tensor(member)
    assert end - begin > size
    overwrite(member, begin + 1024, np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())


def nan_in_running_var(member: Path) -> str:
    """A NaN as the first value of the first BatchNorm running_var; returns the tensor's name."""
    name, entry = next((k, e) for k, e in sorted(tensors(member).items()) if k.endswith("running_var"))
    assert entry["dtype"] == "F32"
    overwrite(member, entry["data_offsets"][0], np.array([np.nan], dtype="<f4").tobytes())
    return name


def edit_json(bundle: Path, **changes: object) -> None:
    meta = bundle / BUNDLE_FILE
    data = {**json.loads(meta.read_text()), **changes}
    meta.write_text(json.dumps({k: v for k, v in data.items() if v is not None}, indent=2))


def rehash(bundle: Path) -> None:
    """Record the members' current SHA-256, as a training run that wrote these weights would have."""
    members = json.loads((bundle / BUNDLE_FILE).read_text())["members"]
    edit_json(bundle, member_sha256={m: hashlib.sha256((bundle / m).read_bytes()).hexdigest() for m in members})


def run_screen(slide: Path, points: Path, bundle: Path, out: Path, cache: Path, *extra: str):
    argv = ["screen", str(slide), "--points", str(points), "--model", str(bundle), "--out", str(out),
            "--cache", str(cache), *extra]
    res = CliRunner().invoke(main, argv)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.output
    return res


def assert_refused(res, out: Path, *expected: str) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert res.exit_code == 1, res.output
    assert len(errors) == 1 and lines[-1] == errors[0], res.output
    assert "Traceback" not in res.output and "unexpected" not in errors[0], res.output
    for text in expected:
        assert text in errors[0], errors[0]
    assert not out.exists(), "a refused model left an output folder"
    assert not (out.parent / "cache").exists(), "a slide was read into the patch cache"
    return errors[0]


# ------------------------------------------------------------------------------------------ recorded hashes


def test_save_bundle_records_hashes_that_match_the_files(tiny_bundle: ModelBundle) -> None:
    data = json.loads((tiny_bundle.path / BUNDLE_FILE).read_text())
    recorded = data["member_sha256"]
    assert sorted(recorded) == sorted(data["members"]) == ["member-0.safetensors", "member-1.safetensors"]
    for name, digest in recorded.items():
        assert digest == hashlib.sha256((tiny_bundle.path / name).read_bytes()).hexdigest()
    assert dict(load_bundle(tiny_bundle.path).config.member_sha256) == recorded


def test_built_in_model_records_its_members_hashes() -> None:
    root = default_bundle_path()
    if not (root / BUNDLE_FILE).is_file():
        pytest.skip("the built-in model is not shipped in this checkout")
    cfg = load_bundle(None).config
    assert sorted(cfg.member_sha256) == sorted(cfg.members) and len(cfg.members) == cfg.provenance["cv"]["folds"]
    for name, digest in cfg.member_sha256.items():
        assert digest == hashlib.sha256((root / name).read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", [flip_one_byte, random_block], ids=["flipped-byte", "200KB-random"])
def test_damaged_member_is_refused(damage, tiny_bundle, slide025, mitosis_points, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    damage(bundle / "member-1.safetensors")
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache", "--engine", "torch")
    assert_refused(res, tmp_path / "out", str(bundle), "member-1.safetensors",
                   "does not match its recorded SHA-256")


def test_replaced_member_is_not_served_from_the_cached_graph(tiny_bundle, slide025, mitosis_points,
                                                             tmp_path: Path) -> None:
    """A first run caches the members' ONNX graphs (in $WSI_AMF_CACHE/graphs); a member then replaced by another
    is refused, not run."""
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    first = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out1", tmp_path / "c1", "--engine", "openvino")
    assert first.exit_code == 0, first.output
    shutil.copy(bundle / "member-0.safetensors", bundle / "member-1.safetensors")  # right format, wrong weights
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache", "--engine", "openvino")
    assert_refused(res, tmp_path / "out", "member-1.safetensors", "does not match its recorded SHA-256")


HASH_EDITS = {
    "one-member-missing": lambda rec: {"member-0.safetensors": rec["member-0.safetensors"]},
    "unknown-member": lambda rec: {**rec, "member-9.safetensors": "00" * 32},
    "not-hex": lambda rec: {**rec, "member-0.safetensors": "xyz"},
    "too-short": lambda rec: {**rec, "member-1.safetensors": rec["member-1.safetensors"][:40]},
    "not-an-object": lambda rec: "abc",
}


@pytest.mark.parametrize("edit", HASH_EDITS.values(), ids=HASH_EDITS.keys())
def test_malformed_recorded_hashes_are_refused(edit, tiny_bundle, slide025, mitosis_points, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_json(bundle, member_sha256=edit(json.loads((bundle / BUNDLE_FILE).read_text())["member_sha256"]))
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache", "--engine", "torch")
    assert_refused(res, tmp_path / "out", str(bundle), "member_sha256")


def test_bundle_without_hashes_still_screens(tiny_bundle, slide025, mitosis_points, tmp_path: Path) -> None:
    """A bundle written before the hashes (or by hand) loads: nothing to check its bytes against, said at -vv."""
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_json(bundle, member_sha256=None)
    assert "member_sha256" not in json.loads((bundle / BUNDLE_FILE).read_text())
    res = CliRunner().invoke(main, ["-vv", "screen", str(slide025.path), "--points", str(mitosis_points), "--model",
                                    str(bundle), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                                    "--engine", "torch"])
    assert res.exit_code == 0, res.output
    assert "records no SHA-256" in res.output
    summary = json.loads((tmp_path / "out" / f"{slide025.path.stem}.summary.json").read_text())
    assert summary["n_classified"] == 8


# ------------------------------------------------------------------------------------------ weights themselves


@pytest.mark.parametrize("engine", ENGINES)
def test_nan_in_batchnorm_running_var_is_refused(engine, tiny_bundle, slide025, mitosis_points, tmp_path: Path) -> None:
    """Hashes recorded over the NaN (training wrote it): only the weights themselves can tell."""
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    tensor = nan_in_running_var(bundle / "member-0.safetensors")
    rehash(bundle)
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache", "--engine", engine)
    assert_refused(res, tmp_path / "out", str(bundle), "member-0.safetensors", tensor, "NaN")


def test_infinite_weight_is_refused_without_recorded_hashes(tiny_bundle, slide025, mitosis_points, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    name, entry = max(tensors(bundle / "member-1.safetensors").items(), key=lambda kv: kv[1]["data_offsets"][1])
    overwrite(bundle / "member-1.safetensors", entry["data_offsets"][0], np.array([-np.inf], dtype="<f4").tobytes())
    edit_json(bundle, member_sha256=None)
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache")
    assert_refused(res, tmp_path / "out", "member-1.safetensors", name, "infinite")


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_member_of_another_shape_is_a_bundle_error_on_the_cpu_runtimes(engine, tiny_bundle, slide025, mitosis_points,
                                                                     tmp_path: Path) -> None:
    """Weights of the wrong shape (hashes recorded, values finite) are the bundle's fault, not the engine's."""
    from safetensors.torch import load_file

    states = [load_file(str(p)) for p in tiny_bundle.member_paths()]
    states[1]["fc.weight"] = states[1]["fc.weight"][:, :16].clone()
    bundle = save_bundle(tmp_path / "bundle", tiny_bundle.config, states).path
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache", "--engine", engine)
    assert_refused(res, tmp_path / "out", "member-1.safetensors", "does not match architecture")


def test_int8_member_that_lost_a_scale_is_refused(tiny_bundle, slide025, mitosis_points, tmp_path: Path) -> None:
    """An int8 member (``--precision int8``) whose tensor lost its scale, hashes recorded over the loss."""
    from safetensors.torch import load_file, save_file

    from wsi_amf.precision import SCALE_SUFFIX, decode

    states = [decode(load_file(str(p))) for p in tiny_bundle.member_paths()]
    bundle = save_bundle(tmp_path / "bundle", tiny_bundle.config, states, precision="int8").path
    stored = load_file(str(bundle / "member-1.safetensors"))
    name = next(k for k, v in sorted(stored.items()) if k + SCALE_SUFFIX in stored)
    del stored[name + SCALE_SUFFIX]
    save_file(stored, str(bundle / "member-1.safetensors"))
    rehash(bundle)
    res = run_screen(slide025.path, mitosis_points, bundle, tmp_path / "out", tmp_path / "cache")
    assert_refused(res, tmp_path / "out", str(bundle), "member-1.safetensors", repr(name), "has no scale")
