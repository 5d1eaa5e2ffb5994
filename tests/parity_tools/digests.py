"""Comparison of our tensors with a parity fixture's records: tensors stored in full, digests (a large tensor's
sums, extremes, sampled values and per-row sums) and parameter tables (per-parameter statistics and samples),
with the bounds of the fixture READMEs ("Digests and parameter tables", "Comparing").

Every check returns a ``Diff``: ``max_abs`` (largest absolute difference of the values compared element by
element: full values, samples, extremes) and ``ratio`` (the largest |difference| / allowed bound over every
statistic compared; within tolerance when <= 1). The bounds follow from |a_i - b_i| <= tol x max(1, |b_i|)
for every element b_i of the official tensor.
"""
import math
from dataclasses import dataclass

import torch


@dataclass
class Diff:
    max_abs: float = 0.0
    ratio: float = 0.0
    note: str = ""

    def merge(self, other):
        return Diff(max(self.max_abs, other.max_abs), max(self.ratio, other.ratio),
                    "; ".join(n for n in (self.note, other.note) if n))

    @property
    def ok(self):
        return self.ratio <= 1.0 and math.isfinite(self.ratio)


def merge_all(diffs):
    """One ``Diff`` of several: the largest difference and ratio, the notes joined."""
    out = Diff()
    for d in diffs:
        out = out.merge(d)
    return out


def _elementwise(a, b, tol):
    a, b = torch.as_tensor(a).double().reshape(-1), torch.as_tensor(b).double().reshape(-1)
    if a.numel() != b.numel():
        return Diff(math.inf, math.inf, f"{a.numel()} values vs {b.numel()}")
    if not a.numel():
        return Diff()
    diff = (a - b).abs()
    nan_same = torch.isnan(a) & torch.isnan(b)
    diff = torch.where(nan_same, torch.zeros_like(diff), diff)
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    return Diff(diff.max().item(), (diff / (tol * b.abs().clamp(min=1))).max().item())


def compare_full(a, b, tol=1e-5):
    """A tensor against one stored in full: |a - b| <= tol x max(1, |b|) elementwise, shapes equal."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if tuple(a.shape) != tuple(b.shape):
        return Diff(math.inf, math.inf, f"shape {tuple(a.shape)} vs {tuple(b.shape)}")
    return _elementwise(a, b, tol)


def _bound(value, recorded, bound):
    return Diff(0.0, abs(value - recorded) / bound if bound > 0 else (0.0 if value == recorded else math.inf))


def compare_digest(a, d, digest_index, tol=1e-5):
    """A tensor against a recorded digest ``d`` (the README's recipe)."""
    x = torch.as_tensor(a).detach().double()
    if list(x.shape) != list(d["shape"]):
        return Diff(math.inf, math.inf, f"shape {list(x.shape)} vs {list(d['shape'])}")
    n = x.numel()
    s = n + d["abs_sum"]
    out = _bound(x.sum().item(), d["sum"], tol * s)
    out = out.merge(_bound(x.abs().sum().item(), d["abs_sum"], tol * s))
    out = out.merge(_bound((x * x).sum().item(), d["sq_sum"], 3 * tol * (s + d["sq_sum"])))
    for key, value in (("min", x.min().item()), ("max", x.max().item())):
        bound = tol * max(1.0, abs(d[key]))
        out = out.merge(Diff(abs(value - d[key]), abs(value - d[key]) / bound))
    out = out.merge(_elementwise(x.reshape(-1)[digest_index[n]], d["sample"], tol))
    if "row_sum" in d:
        m = x.shape[-1]
        q = d["row_sq_sum"].double()
        sr = m + (m * q).sqrt()
        row_sum = (x.sum(-1) - d["row_sum"].double()).abs() / (tol * sr)
        row_sq = ((x * x).sum(-1) - q).abs() / (3 * tol * (sr + q))
        out = out.merge(Diff(0.0, max(row_sum.max().item(), row_sq.max().item())))
    return out


def compare_record(a, record, digest_index, tol=1e-5):
    """A tensor against a record that is either a digest (dict with ``digest``) or a full tensor."""
    if isinstance(record, dict) and record.get("digest") == 1:
        return compare_digest(a, record, digest_index, tol)
    return compare_full(a, record, tol)


def compare_table(tensors, table, digest_index, tol=1e-5):
    """A dict name -> tensor (gradients, weights) against a recorded parameter table: per parameter its sum,
    abs sum, square sum, extremes and samples, and ``full_flat`` (the small tensors in full) elementwise.
    (The README's mathematically-zero gradients, the key biases, are rounding noise <= 5e-8: well inside
    the 1e-5 absolute floor of the bound, as are their Adam moves, < 2e-7.)"""
    names = list(table["names"])
    if sorted(names) != sorted(tensors):
        missing, extra = sorted(set(names) - set(tensors)), sorted(set(tensors) - set(names))
        return Diff(math.inf, math.inf, f"parameters differ: missing {missing[:3]}, extra {extra[:3]}")
    out = Diff()
    for row, name in enumerate(names):
        x = tensors[name].detach().double()
        if list(x.shape) != list(table["shapes"][row]):
            return Diff(math.inf, math.inf, f"{name}: shape {list(x.shape)} vs {list(table['shapes'][row])}")
        n = x.numel()
        total, abs_total, sq_total, low, high = (v.item() for v in table["stats"][row][:5])
        s = n + abs_total
        out = out.merge(_bound(x.sum().item(), total, tol * s))
        out = out.merge(_bound(x.abs().sum().item(), abs_total, tol * s))
        out = out.merge(_bound((x * x).sum().item(), sq_total, 3 * tol * (s + sq_total)))
        for value, recorded in ((x.min().item(), low), (x.max().item(), high)):
            out = out.merge(Diff(abs(value - recorded), abs(value - recorded) / (tol * max(1.0, abs(recorded)))))
        idx = digest_index[n]
        out = out.merge(_elementwise(x.reshape(-1)[idx], table["sample"][row][:len(idx)], tol))
    if "full_names" in table:
        flat = torch.cat([tensors[k].detach().reshape(-1) for k in table["full_names"]])
        out = out.merge(_elementwise(flat, table["full_flat"], tol))
    return out
