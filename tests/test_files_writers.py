"""The one atomic writer (``wsi_amf.files``): whole files or none, the usual permissions, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from wsi_amf.errors import OutputError
from wsi_amf.files import atomic_path, atomic_write_bytes, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_path_writer_gets_the_usual_permissions_and_nothing_is_left_beside(tmp_path: Path, umask_022) -> None:
    dest = tmp_path / "m" / "member-0.safetensors"
    with atomic_path(dest) as tmp:
        save_file({"w": torch.arange(4.0)}, str(tmp))  # safetensors writes 0600 files of its own
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    assert load_file(str(dest))["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["member-0.safetensors"]


def test_a_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "bundle.json"
    atomic_write_text(dest, "old\n")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["bundle.json"]


def test_an_unwritable_destination_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"^output .*file/graph.onnx: cannot be written"):
        atomic_write_bytes(blocker / "graph.onnx", b"\0")
