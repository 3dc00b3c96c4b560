"""Roofline estimate of a compiled step: compute, HBM and interconnect time per chip from XLA's own counts.

    costs = step_costs(compiled)                 # per chip: FLOPs, HBM bytes, collective bytes from the HLO
    estimate = roofline(costs, CHIPS["v5p"], model_flops_per_chip=7.66e15 / 64)
    estimate["step_s"], estimate["mfu"], estimate["bound"]

FLOPs and bytes come from ``compiled.cost_analysis()`` (the per-device program after SPMD partitioning).
Collective bytes are read from the optimised HLO text: every all-gather, reduce-scatter, all-reduce,
all-to-all and collective-permute, its operand sizes, and its group size n from ``replica_groups``. The
bytes a chip sends over its links (ring algorithms, the usual lower bound) are: all-gather operand x (n-1)
(the operand is the local shard), reduce-scatter operand x (n-1)/n, all-reduce 2 x operand x (n-1)/n,
all-to-all operand x (n-1)/n, collective-permute operand. An all-reduce inside a fusion XLA names
``all-reduce-scatter`` is a reduce-scatter (TPU fuses the all-reduce with the slice of it each chip keeps).

The estimate: time of each term at the chip's peak (FLOP/s, HBM B/s, ICI B/s); ``step_s`` assumes the three
overlap perfectly (the max), ``serial_s`` that none does (the sum); MFU = model FLOPs / (peak x time).
It is an estimate, not a measurement: XLA's byte counts assume no cache reuse, the ICI figure is one
number per chip (no topology, no contention), and kernels XLA cannot see into (Pallas custom calls) have no
FLOPs in ``cost_analysis`` (callers add them: ``extra_flops``).
"""

from __future__ import annotations

import dataclasses
import math
import re


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bytes_per_s: float
    ici_bytes_per_s: float  # per chip, one direction ("Interchip Interconnect BW" in Gbps / 8)
    source: str


# Cloud TPU system-architecture pages (key specifications tables), read 2026-11-26.
CHIPS = {
    "v5p": Chip("v5p", 459e12, 2765e9, 4800e9 / 8, "https://cloud.google.com/tpu/docs/v5p"),
    "v5e": Chip("v5e", 197e12, 819e9, 1600e9 / 8, "https://cloud.google.com/tpu/docs/v5e"),
}

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
                "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128|f8e\w+)\[([\d,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?(%[\w.\-]+)\s*=\s*(.*?)\s+([\w\-]+)\((.*)$")
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?(%[\w.\-]+)\s*\((.*?)\)\s*->")


def array_bytes(shape_text: str) -> float:
    """Bytes of every array shape in ``shape_text`` (a tuple shape counts all its elements)."""
    total = 0.0
    for dtype, dims in _ARRAY.findall(shape_text):
        size = _DTYPE_BYTES.get(dtype, 1)  # f8 types: 1 byte
        total += size * math.prod(int(d) for d in dims.split(",") if d)
    return total


def _group_size(line: str, num_devices: int) -> int:
    groups = re.search(r"replica_groups=\{\{([\d,]*)\}", line)
    if groups:
        return len(groups.group(1).split(","))
    iota = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", line)
    if iota:
        return int(iota.group(2))
    mesh = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
    if mesh:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", mesh.group(1)))
        return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", mesh.group(2)))
    return num_devices  # replica_groups={} : all devices


def _link_bytes(kind: str, operand: float, n: int) -> float:
    if n <= 1:
        return 0.0
    return {"all-gather": operand * (n - 1), "reduce-scatter": operand * (n - 1) / n,
            "all-reduce": 2 * operand * (n - 1) / n, "all-to-all": operand * (n - 1) / n,
            "collective-permute": operand}[kind]


def collective_bytes(hlo_text: str, num_devices: int = 1) -> dict[str, dict]:
    """Per collective kind: ``count``, ``operand_bytes`` and ``link_bytes`` (sent per chip), from HLO text."""
    shapes: dict[str, str] = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            shapes[match.group(1)] = match.group(2)
    found = {kind: dict(count=0, operand_bytes=0.0, link_bytes=0.0) for kind in COLLECTIVES}
    computation = ""
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        op = match.group(3)
        kind = op[: -len("-start")] if op.endswith("-start") else op
        if kind not in COLLECTIVES:
            continue
        if kind == "all-reduce" and "reduce-scatter" in computation:
            kind = "reduce-scatter"
        operands = match.group(4).split("),")[0]
        names = re.findall(r"%[\w.\-]+", operands)
        operand = sum(array_bytes(shapes.get(name, "")) for name in names) if names else array_bytes(operands)
        entry = found[kind]
        entry["count"] += 1
        entry["operand_bytes"] += operand
        entry["link_bytes"] += _link_bytes(kind, operand, _group_size(line, num_devices))
    return found


def step_costs(compiled, num_devices: int = 1) -> dict:
    """Per-chip ``flops``, ``hbm_bytes`` (XLA's bytes accessed) and ``collectives`` of a compiled function.
    Note: XLA counts a while loop's body (a ``scan``) once, whatever its trip count."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return dict(flops=float(analysis.get("flops", 0.0)), hbm_bytes=float(analysis.get("bytes accessed", 0.0)),
                collectives=collective_bytes(compiled.as_text(), num_devices))


def combine(costs: list[dict], weights: list[float]) -> dict:
    """sum(w * costs) term by term (e.g. c1 + (N - 1) * (c2 - c1) to extrapolate 1- and 2-block compiles)."""
    def mix(values):
        return sum(w * v for w, v in zip(weights, values, strict=True))
    collectives = {kind: {field: mix([c["collectives"][kind][field] for c in costs])
                          for field in ("count", "operand_bytes", "link_bytes")} for kind in COLLECTIVES}
    return dict(flops=mix([c["flops"] for c in costs]), hbm_bytes=mix([c["hbm_bytes"] for c in costs]),
                collectives=collectives)


def roofline(costs: dict, chip: Chip, *, model_flops_per_chip: float, extra_flops: float = 0.0) -> dict:
    """Time per term at ``chip``'s peaks, the step-time bounds and MFU (see the module docstring)."""
    flops = costs["flops"] + extra_flops
    link = sum(entry["link_bytes"] for entry in costs["collectives"].values())
    terms = {"compute_s": flops / chip.peak_flops, "hbm_s": costs["hbm_bytes"] / chip.hbm_bytes_per_s,
             "ici_s": link / chip.ici_bytes_per_s}
    step, serial = max(terms.values()), sum(terms.values())
    return dict(chip=chip.name, peak_flops=chip.peak_flops, hbm_bytes_per_s=chip.hbm_bytes_per_s,
                ici_bytes_per_s=chip.ici_bytes_per_s, source=chip.source, flops=flops, extra_flops=extra_flops,
                hbm_bytes=costs["hbm_bytes"], ici_bytes=link, **terms,
                bound=max(terms, key=terms.get).removesuffix("_s"), step_s=step, serial_s=serial,
                mfu=model_flops_per_chip / (chip.peak_flops * step) if step else 0.0,
                mfu_serial=model_flops_per_chip / (chip.peak_flops * serial) if serial else 0.0)
