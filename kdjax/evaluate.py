"""Top-1 / top-5 over a whole split, for every sub-model (PaddleClas tools/eval.py)."""

import jax
import numpy as np

from kdjax.data.pipeline import eval_batches


def evaluate(parallel, eval_step, params, batch_stats, frozen, source, *, batch_size: int, limit: int = 0) -> dict:
    """{"<model>/top1": fraction, "<model>/top5": ..., "<model>/loss": mean CE, "count": n}."""
    batch_size = max(parallel.data_size, batch_size - batch_size % parallel.data_size)
    totals = None
    for local in eval_batches(source, global_batch=batch_size, process_index=jax.process_index(),
                              process_count=jax.process_count(), limit=limit):
        sums = eval_step(params, batch_stats, frozen, parallel.put_batch(local))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = {k: float(np.asarray(v)) for k, v in jax.device_get(totals).items()}
    count = max(totals.pop("count"), 1.0)
    out = {k: v / count for k, v in totals.items()}
    out["count"] = int(count)
    return out
