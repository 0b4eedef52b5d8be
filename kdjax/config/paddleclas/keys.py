"""The key PaddleClas' CombinedLoss gives each value of kdjax's own loss types (its usual wrapper's format), for
`config.metric_names='paddleclas'` on configs not translated from a YAML (those carry their keys themselves)."""

from typing import List, Optional

_DEFAULT_FORMATS = {  # kdjax type -> PaddleClas key format of its usual wrapper
    "gt_ce": "CELoss_{a}", "soft_ce": "CELoss_{a}_{b}", "kd": "loss_kldiv_{a}_{b}",
    "dml": "DMLLoss_{a}_{b}_{idx}", "ssld": "DMLLoss_{a}_{b}_{idx}", "dkd": "loss_dkd_{a}_{b}",
    "wsl": "wsl_loss_{a}_{b}", "skd": "skd_loss_{a}_{b}", "dist": "loss_dist_{a}_{b}",
    "mgd": "loss_mgd_{idx}_{a}_{b}", "pefd": "loss_pefd_{idx}_{a}_{b}", "afd": "loss_afd",
}


def default_keys(entry, rkd_index: int = 0) -> Optional[List[List[str]]]:
    """PaddleClas keys for a kdjax entry (entries.LossEntry) its usual wrapper would produce; None for kdjax
    types PaddleClas has no wrapper for (they keep kdjax's names)."""
    kind = entry.type
    units = [tuple(u) + ("",) * (2 - len(u)) for u in entry.units]
    if kind == "distance":
        mode = entry.params.get("mode", "l2")
        return [[f"loss_{mode}_loss_{mode}_{i}"] for i, _ in enumerate(units)]
    if kind == "rkd":
        return [[f"loss_angle_{rkd_index}_{a}_{b}", f"loss_dist_{rkd_index}_{a}_{b}"] for a, b in units]
    if kind not in _DEFAULT_FORMATS:
        return None
    return [[_DEFAULT_FORMATS[kind].format(a=a, b=b, idx=i)] for i, (a, b) in enumerate(units)]
