"""The `--summary` report as text: a fixed-width table of retrain.summary's report, the
totals in words under it, and the JSON form."""

from __future__ import annotations

import json
from typing import Any

from retrain.describe import network_head

COLUMNS = [
    ("params", "params"), ("fs", "FS params"), ("effective", "effective"),
    ("uncompressed", "uncompressed"), ("compression", "compr."),
    ("macs", "MACs"), ("bytes", "bytes"), ("bytes_wq", "bytes WQ"),
]


def _fmt(v: Any, key: str) -> str:
    if v is None:
        return "-"
    if key.startswith("compression"):
        return f"{v:.2f}x"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def budget_line(totals: dict[str, Any]) -> str:
    """Which of the totals a budget counts: the effective parameters (the exported network,
    FS hardened), not "parameters", which adds the DFS offset logits hardening removes."""
    logits = int(totals.get("offset_logits") or 0)
    extra = (f"; \"parameters\" adds the {_fmt(logits, '')} DFS offset logits that hardening "
             "removes" if logits else "")
    return (f"a budget (search --budget, retrain fs.params) counts the effective parameters, "
            f"{_fmt(totals['effective'], '')}: the exported network"
            f"{', FS hardened' if totals.get('fs') else ''}{extra}")


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width text table of `summarize`'s report."""
    net = report["network"]
    # A --fs off network has no FS vectors to quantise: no WQ export.
    head, wq = network_head(net, report.get("fitted_ratio"))
    columns = COLUMNS if wq else [c for c in COLUMNS if c[0] != "bytes_wq"]
    cols = [("part", "part"), ("type", "type")] + columns
    lines = []
    for r in report["rows"] + [{"part": "total", **report["totals"]}]:
        lines.append([str(r.get("part"))] + [str(r.get("type", ""))]
                     + [_fmt(r.get(k), k) for k, _ in columns])
    widths = [max(len(t), *(len(x[i]) for x in lines)) for i, (_, t) in enumerate(cols)]
    fmt_row = lambda xs: "  ".join(x.ljust(w) if i < 2 else x.rjust(w)  # noqa: E731
                                   for i, (x, w) in enumerate(zip(xs, widths, strict=True)))
    out = [head, fmt_row([t for _, t in cols]), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    out += [fmt_row(x) for x in lines[:-1]] + [out[2], fmt_row(lines[-1])]
    t = report["totals"]
    out.append("")
    darts = report["network"].get("model", "darts") == "darts"
    aux_note = " (auxiliary head excluded, as DARTS counts)" if darts else ""
    out.append(f"parameters {_fmt(t['params'], '')}{aux_note}"
               f"; FS {_fmt(t['fs'], '')}; effective {_fmt(t['effective'], '')}"
               + (f" ({_fmt(t['weight_bytes_wq'], '')} weight bytes with 8-bit WQ: 1 byte per "
                  "FS element, 4 per other parameter)" if wq else ""))
    out.append(budget_line(t))
    out.append(f"uncompressed equivalent {_fmt(t['uncompressed'], '')}; compression "
               f"{_fmt(t['compression'], 'compression')}"
               + (f" ({_fmt(t.get('compression_wq'), 'compression')} with WQ)" if wq else "")
               + f"; MACs {_fmt(t['macs'], '')} per input")
    if "unnarrowed" in t:
        out.append(narrowed_line(report["network"], t))
    if not wq:
        out.append(f"model.pt {'' if t.get('file_bytes_exact') else 'about '}"
                   f"{_fmt(t['file_bytes'], '')} bytes"
                   + ("" if t.get("file_bytes_exact") else " (an estimate: the file also holds "
                      "the dataset's class names and statistics; --dataset on disk makes it exact)"))
    elif t.get("file_bytes_exact"):
        out.append(f"model.pt {_fmt(t['file_bytes'], '')} bytes; model-wq.pt "
                   f"{_fmt(t['file_bytes_wq'], '')} bytes (the files a run with these settings "
                   "writes)")
    else:
        out.append(f"model.pt about {_fmt(t['file_bytes'], '')} bytes; model-wq.pt about "
                   f"{_fmt(t['file_bytes_wq'], '')} bytes (estimates: the files also hold the "
                   "dataset's class names and statistics; --dataset on disk makes them exact)")
    if "papers_count" in t:
        out.append(f"as the FSNet papers count (BatchNorm's {_fmt(t['bn_statistics'], '')} running "
                   f"statistics included): {_fmt(t['papers_count'], '')}"
                   + (f", {_fmt(t['papers_count_wq'], '')} with WQ" if wq else ""))
    if "w_conv" in t:
        out.append(f"|W_conv| {_fmt(t['w_conv'], '')} (conv weights and biases, the shared conv "
                   f"once); unshared counterpart {t['unshared']}: {_fmt(t['w_conv_unshared'], '')}"
                   f"; C = {t['sharing_compression']:.2f}")
    if report["auxiliary_head"]:
        out.append(f"auxiliary head (training only, not exported): "
                   f"{_fmt(report['auxiliary_head']['params'], '')} parameters")
    return "\n".join(out)


def narrowed_line(net: dict[str, Any], totals: dict[str, Any]) -> str:
    """The size against the network at the width fs.max_ratio narrowed it from: the
    compression above counts against the narrowed width's plain network."""
    return (f"against {net['model']} at width {net['extra']['width_from']} (the width before "
            f"fs.max_ratio narrowed it; {_fmt(totals['unnarrowed'], '')} parameters): "
            f"compression {_fmt(totals['compression_unnarrowed'], 'compression')}")


def format_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
