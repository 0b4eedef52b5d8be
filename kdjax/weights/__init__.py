"""Weights on disk: the export-directory format, resolving a sub-model's `init`, and exact import of PaddleClas /
torchvision checkpoints."""
