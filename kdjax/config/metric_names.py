"""What each loss term is called in metrics.jsonl, TensorBoard and the progress line: `config.metric_names`.

  kdjax        `loss/<type>/<models>[/<part>]`, e.g. loss/dkd/Student-Teacher, loss/rkd/Student-Teacher/angle
  paddleclas   the key PaddleClas' CombinedLoss gives the same value, e.g. loss_dkd_Student_Teacher,
               DMLLoss_Student_Teacher_0, CELoss_Student, loss_angle_0_Student_Teacher. A config translated from a
               PaddleClas YAML carries each entry's keys (custom `name`s included) in `config.paddleclas.metric_keys`;
               kdjax's own configs get those of each type's usual PaddleClas wrapper; types PaddleClas has no wrapper
               for (fitnet, at, crd, ...) keep kdjax's name.

The total is `loss` either way. Only the names change: the values, and the internal term names the non-finite
checks report, stay the same.
"""

from typing import Dict

CHOICES = ("kdjax", "paddleclas")
PREFIX = "loss/"


def term_labels(config, losses) -> Dict[str, str]:
    """{"loss/<kdjax term>": name to log} for every term of `losses` (a CombinedLoss built from config.losses)."""
    kdjax_names = {PREFIX + t: PREFIX + t for t in losses.term_names}
    if (config.get("metric_names") or "kdjax") != "paddleclas":
        return kdjax_names
    from kdjax.config.paddleclas.keys import default_keys

    pc = config.get("paddleclas") or {}
    explicit = dict((pc.get("metric_keys") or {}).items()) if pc else {}
    entry_names = list(config.losses)
    labels, used, rkd_seen = {}, set(), 0
    for entry in losses.entries:
        name = entry_names[entry.index] if entry.index < len(entry_names) else ""
        # a translated YAML's own keys, by unit ("Student-Teacher"): a unit it does not name (e.g. the teacher's
        # ground-truth CE when the teacher is trained first) gets the usual wrapper's key
        given = {unit: keys for unit, keys in (explicit.get(name) or ())}
        defaults = default_keys(entry, rkd_seen)
        if entry.type == "rkd":
            rkd_seen += 1
        for u, unit_terms in enumerate(losses.entry_term_names(entry.index)):
            keys = given.get("-".join(entry.units[u])) or (defaults[u] if defaults is not None else None)
            for p, term in enumerate(unit_terms):
                label = PREFIX + term
                if keys is not None and p < len(keys):
                    label = str(keys[p])
                if label in used:  # PaddleClas would overwrite; kdjax keeps both apart
                    label = f"{label}#{entry.index}"
                used.add(label)
                labels[PREFIX + term] = label
    return labels


def rename(metrics: dict, labels: Dict[str, str]) -> dict:
    """`metrics` with its loss-term keys renamed by `labels` (other keys unchanged, order kept)."""
    return {labels.get(k, k): v for k, v in metrics.items()}
