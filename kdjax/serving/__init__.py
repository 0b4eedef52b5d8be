"""Using an exported model: `kdjax.infer` (top-k predictions), the StableHLO artifact and its stand-alone loader."""
