"""The README's results table is generated from the committed sweep report it links to
(kdjax/tools/sweep_readme.py), so it cannot drift from the numbers: regenerate it with the command in its marker."""

import json
import os

from kdjax.tools import sweep_readme

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_readme_results_block_is_what_its_results_json_gives():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    path, old = sweep_readme.current(text)
    assert path, "README.md has no generated sweep results block"
    with open(os.path.join(ROOT, path)) as f:
        results = json.load(f)
    assert old == sweep_readme.block(results, path), (
        f"README's results table is stale: python -m kdjax.tools.sweep_readme {path} README.md")


def test_the_block_lists_every_method_with_its_grid_and_the_paired_statistics(tmp_path):
    results = {
        "protocol": {"student": "s", "epochs": 4.0},
        "teacher": {"arch": "t", "top1": 0.9},
        "methods": {
            "baseline": {"seeds": [0, 1, 2], "last": [0.80, 0.81, 0.82], "best": [0.80, 0.81, 0.82],
                         "settings": {"optim.lr": 0.1},
                         "trials": [{"settings": {"optim.lr": 0.05}}, {"settings": {"optim.lr": 0.1}}]},
            "kd": {"seeds": [0, 1, 2], "last": [0.81, 0.83, 0.83], "best": [0.81, 0.83, 0.83],
                   "settings": {"losses.kd.weight": 0.9, "losses.kd.params.temperature": 4.0},
                   "trials": [{"settings": {"losses.kd.weight": w, "losses.kd.params.temperature": t}}
                              for w in (0.5, 0.9) for t in (2.0, 4.0)]},
        },
    }
    text = sweep_readme.block(results, "docs/results/x/results.json")
    # gains +1, +2, +1 pp: mean 1.33, SE 0.33, paired t = 4.0 with 2 df: p = 0.057
    assert "| kd | kd.weight=0.9, kd.temperature=4 | 82.33 ± 1.15 | +1.33 ± 0.33 | 0.057 |" in text
    assert "kd.weight {0.5, 0.9} × kd.temperature {2, 4}" in text and "| baseline | lr=0.1 |" in text
    assert "lr {0.05, 0.1}" in text and "Beat the baseline at p < 0.05 (last epoch): none" in text
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + sweep_readme.BEGIN.format(path="r.json") + "\nold\n" + sweep_readme.END + "\nend\n")
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert sweep_readme.main(["x", str(tmp_path / "r.json"), str(readme), "--check"]) == 1
    assert sweep_readme.main(["x", str(tmp_path / "r.json"), str(readme)]) == 0
    assert sweep_readme.main(["x", str(tmp_path / "r.json"), str(readme), "--check"]) == 0
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith(sweep_readme.END + "\nend\n")
