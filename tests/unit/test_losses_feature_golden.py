"""mdistiller's feature/relation losses (ReviewKD hcl_loss, PKT, SP, NST, VID, OFD) and ICKDLoss against the golden
vectors of ../shared/golden_methods (reference code run under torch; LOSSES.md §8-14): loss, every stored gradient and
OFD's margins. Skipped when the folder is absent; KDJAX_GOLDEN_METHODS_DIR points elsewhere."""

import json
import os

import pytest

from kdjax.tools import verify_golden

from conftest import SHARED

GOLDEN_DIR = os.environ.get("KDJAX_GOLDEN_METHODS_DIR", os.path.join(SHARED, "golden_methods"))
FAMILIES = ("reviewkd", "pkt", "sp", "nst", "vid", "ofd", "ickd")


def _cases():
    path = os.path.join(GOLDEN_DIR, "manifest.json")
    if not os.path.isfile(path):
        return [], {}
    with open(path) as f:
        manifest = json.load(f)
    cases = [c for c in manifest["cases"] if c["case"].split("_")[0] in FAMILIES]
    return cases, manifest.get("conventions", {})


CASES, CONVENTIONS = _cases()


@pytest.mark.skipif(not CASES, reason=f"no golden_methods manifest at {GOLDEN_DIR}")
@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_feature_loss_matches_reference(case):
    result = verify_golden.run_case(GOLDEN_DIR, case, CONVENTIONS)
    assert result.passed, result.line()
    assert not any(n.startswith("not checked") for n in result.notes), result.line()


@pytest.mark.skipif(not CASES, reason=f"no golden_methods manifest at {GOLDEN_DIR}")
def test_every_family_has_cases():
    assert {c["case"].split("_")[0] for c in CASES} == set(FAMILIES)
