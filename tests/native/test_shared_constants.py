"""pywg/constants.py is the one definition of the numbers Python and C share.

build_fast.py generates src/pywg/_fast/wg_constants.h from it at build time.
These tests fail when the compiled extension holds another value (a stale
build, a hand-edited header), when the header on disk is not what
constants.py gives, when a hand-written C file or another Python module
defines one of those names again, or when constants.py grows a kind of value
the generator does not carry to C.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from pywg import _fast, constants

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "pywg"
FAST = PACKAGE / "_fast"
GENERATED = FAST / "wg_constants.h"


def _numbers() -> dict[str, int | float]:
    """Every int and float constant that constants.py declares Final."""
    out: dict[str, int | float] = {}
    for name in constants.__annotations__:
        value = getattr(constants, name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_test_build_fast", FAST / "build_fast.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constants_holds_only_what_the_generator_carries_or_bytes() -> None:
    kinds = {type(getattr(constants, name)) for name in constants.__annotations__}
    assert kinds <= {int, float, bytes}, kinds  # bytes (labels) stay Python's
    assert len(_numbers()) >= 50


@pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")
def test_every_number_compiled_into_c_equals_the_python_constant() -> None:
    lib = _fast.lib
    for name, value in _numbers().items():
        compiled = getattr(lib, f"PYWG_{name}")
        assert type(compiled) is type(value), name
        assert compiled == value, f"PYWG_{name} is {compiled} in C, {value} in constants.py"


def test_the_generated_header_is_what_constants_py_gives() -> None:
    build_fast = _build_script()
    assert build_fast.load_constants() == _numbers()
    if not GENERATED.exists():
        pytest.skip("wg_constants.h not generated yet (the extension was never built here)")
    text = GENERATED.read_text(encoding="utf-8")
    assert text.startswith("/* Generated from pywg/constants.py")
    assert "do not edit" in text.splitlines()[0]
    expected = build_fast.constants_header(_numbers())
    differing = sorted(set(text.splitlines()) ^ set(expected.splitlines()))
    assert text == expected, f"wg_constants.h is not constants.py's (rebuild): {differing}"


def test_no_hand_written_c_file_defines_a_shared_name() -> None:
    names = "|".join(_numbers())
    define = re.compile(rf"^\s*#\s*define\s+((?:PYWG_)?(?:{names}))\b", re.MULTILINE)
    sources = sorted(FAST.glob("*.[ch]"))
    assert FAST / "plane.c" in sources
    for source in sources:
        if source == GENERATED or source.name.startswith("_"):
            continue  # the generated header; cffi's own generated wrapper
        found = define.findall(source.read_text(encoding="utf-8"))
        assert not found, f"{source.name} defines {found}: include wg_constants.h instead"


def test_no_other_python_module_assigns_a_constant_of_constants_py() -> None:
    names = "|".join(name for name in constants.__annotations__)
    assignment = re.compile(rf"^({names})\s*(?::[^=\n]*)?=", re.MULTILINE)
    for module in sorted(PACKAGE.rglob("*.py")):
        where = module.relative_to(PACKAGE).as_posix()
        if where == "constants.py":
            continue
        found = assignment.findall(module.read_text(encoding="utf-8"))
        assert not found, f"{where} defines {found} again: import them from pywg.constants"
