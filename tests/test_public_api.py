"""The public API: ``wsi_amf.__all__``, the names ``__init__.py`` loads on first use, and the stub that tells
type checkers about them agree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import wsi_amf

STUB = Path(wsi_amf.__file__).with_suffix(".pyi")


def _stub_names() -> dict[str, str]:
    """name -> the module the stub imports it from."""
    names = {}
    for node in ast.parse(STUB.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = f"wsi_amf.{node.module}"
    return names


def test_the_stub_declares_every_public_name_from_where_it_is_loaded() -> None:
    stub = _stub_names()
    assert set(stub) == set(wsi_amf.__all__)
    for name, module in stub.items():
        assert getattr(wsi_amf, name) is getattr(importlib.import_module(module), name), name


def test_wsi_amf_screen_stays_the_function_after_its_module_is_imported() -> None:
    importlib.import_module("wsi_amf.screen")
    assert callable(wsi_amf.screen) and wsi_amf.screen.__name__ == "screen"
    assert wsi_amf.ScreenOptions().batch_size == 64
