"""A plain (non-editable) install ships modules/ and yamls/ inside the flopscope package."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_zoo_and_configs_into_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, timeout=300, cwd=tmp_path)
    wheel = next(tmp_path.glob("flopscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "flopscope/modules/yolov5.py" in names
    assert "flopscope/yamls/yolov5s.yaml" in names
    assert "flopscope/commands/model.py" in names
    assert not any(n.startswith(("modules/", "yamls/", "tests/")) for n in names)
    bundled = {Path(n).name for n in names if n.startswith("flopscope/yamls/") and n.endswith(".yaml")}
    assert bundled == {p.name for p in (ROOT / "yamls").glob("*.yaml")}


# Run from the root of a source checkout with no install in effect: an editable install's finder (if the test
# environment has one) is removed first, so only the checkout's own layout can resolve flopscope.modules/yamls.
_NO_INSTALL = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
for name in [n for n in sys.modules if n == "flopscope" or n.startswith("flopscope.")]:
    del sys.modules[name]
import flopscope, flopscope.modules, flopscope.yamls
from flopscope.config import bundled_names
print(flopscope.__file__, flopscope.modules.__file__, flopscope.yamls.__file__, "yolov5s" in bundled_names())
sys.argv = ["flopscope", "layer", "C3", "--c", "16", "--hw", "8", "--json", "-"]
runpy.run_module("flopscope", run_name="__main__", alter_sys=True)
"""


def test_source_checkout_runs_without_install():
    import json

    p = subprocess.run([sys.executable, "-c", _NO_INSTALL], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    first, rest = p.stdout.split("\n", 1)
    pkg, zoo, yamls, bundled = first.split()
    assert Path(pkg) == ROOT / "flopscope" / "__init__.py"
    assert Path(zoo) == ROOT / "modules" / "__init__.py" and Path(yamls) == ROOT / "yamls" / "__init__.py"
    assert bundled == "True"
    assert json.loads(rest)["module"] == "C3"


def test_every_subpackage_is_packaged():
    """Each folder of flopscope/ with an __init__.py is listed in pyproject's packages (an installed flopscope
    once lacked flopscope.dialects)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"flopscope." + ".".join(p.parent.relative_to(ROOT / "flopscope").parts)
             for p in (ROOT / "flopscope").rglob("__init__.py") if p.parent != ROOT / "flopscope"}
    assert found <= listed, found - listed
