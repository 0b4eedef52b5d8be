"""What XLA says about a compiled step: FLOPs (`cost_analysis`), memory per device (`memory_analysis`) and the
collectives in its HLO text. Used by the trainer's device-memory refusal, `--mode=check` (tools/preflight.py),
`kdjax.tools.bench` (MFU) and the HLO tests; the steps themselves are lowered from shapes by tools/lowering.py.
"""

import dataclasses
import re
from typing import Dict, List

import numpy as np


def cost(compiled) -> Dict[str, float]:
    """XLA's cost analysis of a compiled executable: {"flops": ..., "bytes_accessed": ...} (per device program)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0] if analysis else {}
    analysis = analysis or {}
    return {"flops": float(analysis.get("flops", 0.0)), "bytes_accessed": float(analysis.get("bytes accessed", 0.0))}


@dataclasses.dataclass
class Memory:
    """XLA's memory estimate of one device's program (bytes)."""

    arguments: int
    outputs: int
    aliased: int     # outputs written into donated arguments (counted once)
    temporaries: int
    code: int

    @property
    def total(self) -> int:
        """Peak bytes the program needs on one device: arguments + outputs not aliased to them + temporaries."""
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


def memory(compiled) -> Memory:
    m = compiled.memory_analysis()
    return Memory(arguments=int(m.argument_size_in_bytes), outputs=int(m.output_size_in_bytes),
                  aliased=int(m.alias_size_in_bytes), temporaries=int(m.temp_size_in_bytes),
                  code=int(getattr(m, "generated_code_size_in_bytes", 0) or 0))


# ---- collectives in the compiled HLO ------------------------------------------------------------------------

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128)\[([\d,]*)\]")
_OP = re.compile(r"=\s*(.*?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")


@dataclasses.dataclass(frozen=True)
class Collective:
    op: str                 # all-gather, all-reduce, reduce-scatter, all-to-all, collective-permute
    shapes: tuple           # result array shapes, e.g. (("f32", (32, 14, 14, 8)),)
    line: str

    @property
    def bytes(self) -> int:
        """Bytes of its result on one device (all-gather: the gathered array; all-reduce: the reduced one)."""
        return sum(_DTYPE_BYTES[d] * int(np.prod(s, dtype=np.int64)) for d, s in self.shapes)


def collectives(hlo_text: str) -> List[Collective]:
    """Every collective of a compiled module's text (`compiled.as_text()`); an async pair is counted once, at its
    -start, by its results."""
    found = []
    for line in hlo_text.splitlines():
        m = _OP.search(line)
        if not m:
            continue
        arrays = _ARRAY.findall(m.group(1))
        if m.group(3) and m.group(2) in ("all-gather", "all-to-all"):  # async start: (operands..., results...)
            arrays = arrays[len(arrays) // 2:]
        elif m.group(3) and m.group(2) == "collective-permute":   # (operand, result, context scalars)
            arrays = arrays[1:2]
        shapes = tuple((d, tuple(int(x) for x in dims.split(",") if x)) for d, dims in arrays)
        found.append(Collective(m.group(2), shapes, line.strip()))
    return found


def count_collectives(hlo_text: str) -> Dict[str, int]:
    counts = {op: 0 for op in COLLECTIVES}
    for c in collectives(hlo_text):
        counts[c.op] += 1
    return counts
