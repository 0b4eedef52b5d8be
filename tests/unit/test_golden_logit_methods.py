"""The newer logit methods against their original implementations' golden cases (../shared/golden_methods, LOSSES.md
§1–7): MLKD (KD_ours), MLKD + logit standardization, LS-KD / LS-DKD, CTKD, NKD, USKD, each case through
`kdjax.tools.verify_golden` (what `python -m kdjax.tools.verify_golden ../shared/golden_methods -k <family>` runs).

The folder defaults to ../shared/golden_methods beside the repository; set KDJAX_GOLDEN_METHODS_DIR to use another.
"""

import json
import os

import pytest

from kdjax.tools import verify_golden

from conftest import SHARED

GOLDEN_DIR = os.environ.get("KDJAX_GOLDEN_METHODS_DIR", os.path.join(SHARED, "golden_methods"))
MANIFEST = os.path.join(GOLDEN_DIR, "manifest.json")
# family -> how many cases the public set has (a case that vanished from the manifest must not pass silently)
FAMILIES = {"mlkd": 8, "lsmlkd": 5, "lskd_kd": 8, "lskd_dkd": 8, "ctkd": 11, "nkd": 8, "uskd": 8}


def _manifest():
    if not os.path.isfile(MANIFEST):
        return {"cases": [], "conventions": {}}
    with open(MANIFEST) as f:
        return json.load(f)


_M = _manifest()
needs_golden = pytest.mark.skipif(not _M["cases"], reason=f"no golden manifest at {MANIFEST}")


def _family(name: str):
    return next((f for f in sorted(FAMILIES, key=len, reverse=True) if name.startswith(f + "_")), None)


_CASES = [c for c in _M["cases"] if _family(c["case"])]


@needs_golden
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_its_cases(family):
    assert sum(_family(c["case"]) == family for c in _CASES) == FAMILIES[family]


@needs_golden
@pytest.mark.parametrize("case", _CASES, ids=[f"{_family(c['case'])}/{c['case']}" for c in _CASES])
def test_golden_case(case):
    result = verify_golden.run_case(GOLDEN_DIR, case, _M["conventions"])
    assert result.passed, result.line()
