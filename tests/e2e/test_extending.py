"""docs/extending.md is the contract for contributors: its examples, written to their paths in a copy of the repository
(no other file touched), train as its command says, and the new loss's metric is logged and finite."""

import json
import math
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO

DOC = os.path.join(REPO, "docs", "extending.md")
FASHION = "/usr/share/datasets/fashion-mnist"


def blocks(text: str):
    """([(path, code)] of the `File: path` blocks, [code] of the bash blocks) in document order."""
    files = [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^File: (\S+)\n```python\n(.*?)^```$", text,
                                                                   re.S | re.M)]
    shell = [m.group(1) for m in re.finditer(r"^```bash\n(.*?)^```$", text, re.S | re.M)]
    return files, shell


def _copy_repo(target):
    def ignore(directory, names):
        top = {".git", "runs", ".pytest_cache"} if os.path.samefile(directory, REPO) else set()
        return [n for n in names if n in top or n == "__pycache__" or n.endswith(".pyc")]

    shutil.copytree(REPO, target, ignore=ignore)


def test_the_doc_has_a_loss_a_model_a_source_and_a_command():
    files, shell = blocks(open(DOC).read())
    paths = [p for p, _ in files]
    assert any(p.startswith("kdjax/losses/") for p in paths)
    assert any(p.startswith("kdjax/models/") for p in paths)
    assert any(p.startswith("kdjax/data/") for p in paths)
    assert any(p.startswith("configs/") for p in paths) and any(p.startswith("tests/") for p in paths)
    assert len(shell) == 1 and "python -m kdjax.main" in shell[0]
    for path in paths:  # new files only: an example that edits an existing file would break the contract
        assert not os.path.exists(os.path.join(REPO, path)), path


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="the doc's example data comes from Debian's Fashion-MNIST "
                                                       "(apt-get install dataset-fashion-mnist)")
def test_replaying_the_examples_trains_with_the_new_loss_model_and_source(tmp_path):
    repo = tmp_path / "repo"
    _copy_repo(repo)
    files, shell = blocks(open(DOC).read())
    for path, code in files:
        target = repo / path
        assert not target.exists(), path
        target.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", shell[0]], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "1 passed" in out.stdout  # the doc's unit test of the new loss ran

    records = [json.loads(line) for line in open(repo / "runs" / "logit_cosine" / "metrics.jsonl")]
    train = [r for r in records if r["kind"] == "train"]
    values = [r["loss/logit_cosine/Student-Teacher"] for r in train]
    assert values and all(math.isfinite(v) for v in values)
    spec = json.load(open(repo / "runs" / "logit_cosine" / "export" / "spec.json"))
    assert spec["arch"] == "mlp_student"
    summary = json.load(open(repo / "runs" / "logit_cosine" / "summary.json"))
    assert summary["eval"]["count"] == 256  # the npz test split was read, not Fashion-MNIST's 10,000
