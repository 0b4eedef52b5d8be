"""Every golden case (reference PaddleClas / mdistiller runs) must pass through kdjax, plus the CLI contract.

The folder is KDJAX_GOLDEN_DIR when set, else ../shared/golden beside the repository when it is there, else the copy
in tests/golden (1.4 MB, the same files), so a plain clone verifies too.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kdjax.tools import verify_golden

from conftest import REPO as REPO_ROOT  # noqa: E402


def _golden_dir() -> str:
    if os.environ.get("KDJAX_GOLDEN_DIR"):
        return os.environ["KDJAX_GOLDEN_DIR"]
    shared = os.path.join(REPO_ROOT, "..", "shared", "golden")
    if os.path.isfile(os.path.join(shared, "manifest.json")):
        return shared
    return os.path.join(REPO_ROOT, "tests", "golden")


GOLDEN_DIR = _golden_dir()
MANIFEST = os.path.join(GOLDEN_DIR, "manifest.json")


def _manifest():
    if not os.path.isfile(MANIFEST):
        return {"cases": [], "conventions": {}}
    with open(MANIFEST) as f:
        return json.load(f)


_M = _manifest()
needs_golden = pytest.mark.skipif(not _M["cases"], reason=f"no golden manifest at {MANIFEST}")


@needs_golden
@pytest.mark.parametrize("case", _M["cases"], ids=[c["case"] for c in _M["cases"]])
def test_golden_case(case):
    result = verify_golden.run_case(GOLDEN_DIR, case, _M["conventions"])
    assert result.passed, result.line()


def _subset(tmp_path, names, corrupt=None):
    """A golden folder with the named cases; `corrupt` gets its reference loss shifted by 1%."""
    cases = [c for c in _M["cases"] if c["case"] in names]
    for c in cases:
        src = os.path.join(GOLDEN_DIR, c["file"])
        if c["case"] == corrupt:
            with np.load(src) as f:
                data = {k: f[k] for k in f.files}
            data["loss"] = data["loss"] * np.float32(1.01)
            np.savez(tmp_path / c["file"], **data)
        else:
            shutil.copy(src, tmp_path / c["file"])
    with open(tmp_path / "manifest.json", "w") as f:
        json.dump(dict(_M, cases=cases), f)
    return str(tmp_path)


@needs_golden
def test_cli_exit_code_and_summary_line(tmp_path):
    names = [c["case"] for c in _M["cases"] if c["loss"] in ("CELoss", "KLDivLoss")][:3]
    folder = _subset(tmp_path, names, corrupt=names[-1])
    proc = subprocess.run([sys.executable, "-m", "kdjax.tools.verify_golden", folder], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines[-1] == f"{len(names) - 1} passed, 1 failed"
    assert len(lines) == len(names) + 1 and f"{names[-1]} " in lines[-2] and " FAIL " in lines[-2]


@needs_golden
def test_main_passes_on_good_cases(tmp_path, capsys):
    names = [c["case"] for c in _M["cases"] if c["loss"] == "CELoss"][:2]
    assert verify_golden.main([_subset(tmp_path, names)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"{len(names)} passed, 0 failed"


def test_missing_manifest_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        verify_golden.main([str(tmp_path)])
    assert exit_info.value.code == 2 and "no manifest.json" in capsys.readouterr().err


def test_repository_copy_is_the_shared_golden_set():
    """tests/golden is what a plain clone verifies against: every file of ../shared/golden, byte for byte (when the
    shared folder is there), and its combined cases pass from the copy itself."""
    import filecmp

    copy = os.path.join(REPO_ROOT, "tests", "golden")
    shared = os.path.join(REPO_ROOT, "..", "shared", "golden")
    if os.path.isdir(shared):
        names = sorted(os.listdir(shared))
        assert sorted(os.listdir(copy)) == names
        _, mismatch, errors = filecmp.cmpfiles(shared, copy, names, shallow=False)
        assert not mismatch and not errors, (mismatch, errors)
    with open(os.path.join(copy, "manifest.json")) as f:
        manifest = json.load(f)
    combined = [c for c in manifest["cases"] if c["loss"].startswith("CombinedLoss")][:3]
    assert combined
    for case in combined:
        result = verify_golden.run_case(copy, case, manifest.get("conventions", {}))
        assert result.passed, result.line()
