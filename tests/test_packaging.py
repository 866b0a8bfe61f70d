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
