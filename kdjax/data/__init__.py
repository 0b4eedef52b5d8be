"""Input pipelines: sources (IDX, TFDS, list files) → grain transforms → global batches."""
