"""The method registry: names, refusals, and plug-ins found through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tal.methods import get_method, method_names, register_method
from tal.methods.actionformer import ActionFormer
from tal.methods.registry import ENTRY_POINT_GROUP

REPO = Path(__file__).resolve().parents[3]


def test_builtin_methods_are_registered_and_unknown_names_listed():
    assert {"actionformer", "i2net", "asl", "co2net"} <= set(method_names())
    assert get_method("actionformer") is ActionFormer
    with pytest.raises(ValueError, match="unknown method 'nope'; registered methods: "):
        get_method("nope")


def test_a_name_cannot_be_taken_twice_or_mismatch_its_config():
    class Again(ActionFormer):
        pass

    with pytest.raises(ValueError, match="'actionformer' is already registered"):
        register_method(Again)

    class Renamed(ActionFormer):
        name = "renamed"

    with pytest.raises(ValueError, match="must default name to 'renamed'"):
        register_method(Renamed)


PLUGIN = """
from typing import Literal

from tal.methods.actionformer import ActionFormerConfig, OneStageMethod
from tal.methods.registry import register_method


class WideConfig(ActionFormerConfig):
    name: Literal["wide"] = "wide"  # type: ignore[assignment]


@register_method
class Wide(OneStageMethod[WideConfig]):
    name = "wide"
    config_class = WideConfig
"""


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path):
    """A package (a module and its dist-info) on the path declares the entry point; a fresh
    process validates a config naming its method without importing it by hand."""
    (tmp_path / "wide_method.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "wide_method-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wide-method\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nwide = wide_method\n")
    probe = (
        "from tal.config import load_config; "
        "c = load_config(None, ['model.name=wide', 'model.embed_dim=64']); "
        "print(type(c.model).__name__, c.model.embed_dim)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["WideConfig", "64"]
