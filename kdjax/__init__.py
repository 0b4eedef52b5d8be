"""kdjax: knowledge distillation in JAX/Flax (PaddleClas DistillationModel semantics)."""

__version__ = "0.1.0"
