"""The conformance report page: the verdict matrix, each row's rules and evidence (citation
links, anchored result files with their digest status), and for our own targets the capacity
sweep and the counterexample traces of the lowerings the checker rejects.

One self-contained HTML file (inline CSS and SVG, no script, nothing fetched), so it renders
the same from a file:// URL in a headless browser as on a desk."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, List

from .bundles import MODE_NAMES
from .descriptor import CLASSES, load
from .evidence import check_anchor
from .verdict import Row

COLOURS = {"native_conformance": "#1a9850", "adapter_observational": "#91cf60",
           "adapter_policy": "#d9ef8b", "approximation_substrate": "#fee08b",
           "rejected_mapping": "#d73027", "unknown_evidence": "#bdbdbd"}
SWEEP_POLICIES = ("native", "soft_priority", "hard_refuse", "hard_demote")
# the lowerings a runtime maintainer is most tempted by, run on our own target to show how
# they break the contract: (litmus, variant, policy)
COUNTEREXAMPLES = (("C1", "scaled", "soft_priority"), ("L3", "scaled", "native"),
                   ("L6", "scaled", "block_count"))

E = html.escape


def _matrix(rows: List[Row]) -> str:
    runtimes: List[tuple] = []
    for r in rows:
        if (r.runtime, r.version) not in runtimes:
            runtimes.append((r.runtime, r.version))
    out = ["<table class='matrix' id='matrix'><tr><th>runtime</th><th>version</th>"
           + "".join(f"<th>{m}</th>" for m in MODE_NAMES) + "</tr>"]
    for rt in runtimes:
        cells = {r.mode: r for r in rows if (r.runtime, r.version) == rt}
        out.append(f"<tr><th>{E(rt[0])}</th><td>{E(rt[1])}</td>")
        for m in MODE_NAMES:
            r = cells[m]
            out.append(f"<td class='cell' style='background:{COLOURS[r.cls]}' "
                       f"data-runtime='{E(r.runtime)}' data-mode='{m}' data-class='{r.cls}' "
                       f"title='{E('; '.join(r.rules))}'>{r.cls}"
                       + (" <b>(!)</b>" if r.mismatch else "") + "</td>")
        out.append("</tr>")
    out.append("</table>")
    legend = "".join(f"<span class='key' style='background:{COLOURS[c]}'>{c}</span>"
                     for c in CLASSES)
    return "\n".join(out) + f"<p class='legend'>{legend}</p>"


def _evidence_cell(ev: Dict[str, str]) -> str:
    by = ev.get("by", "")
    text = (f"<a href='{E(by)}'>{ev['status']}</a>" if by.startswith(("http://", "https://"))
            else ev["status"])
    return f"<td class='ev-{ev['status']}' title='{E(by)}'>{text}</td>"


def _descriptor_section(path: str, rows: List[Row]) -> str:
    d = load(path)
    out = [f"<section class='runtime'><h2>{E(d.runtime)} {E(d.version)}</h2>",
           f"<p>{E(d.title)} &mdash; integration: <b>{E(d.integration)}</b>; "
           f"descriptor <code>{E(Path(path).name)}</code></p>",
           "<table class='lowering'><tr><th>contract element</th><th>lowered to</th></tr>"]
    out += [f"<tr><td>{E(k)}</td><td>{E(v)}</td></tr>" for k, v in d.lowering.items()]
    out.append("</table>")
    base = Path(d.path).parent
    for a in d.anchors:         # re-checked here as in the verdict: what the page says is now
        chk = check_anchor(a, base, d.version, d.targets)
        state = ("checks out: sha256 " + chk.digest + f", target {chk.target}, version "
                 f"{chk.runtime_version}") if chk.ok else f"{chk.rule}: {chk.detail}"
        out.append(f"<p class='anchor'>evidence anchor <code>{E(a['file'])}</code> &mdash; "
                   f"<span class='{'ev-machine' if chk.ok else 'ev-stale'}'>{E(state)}</span>"
                   "</p>")
    if d.citations:
        out.append("<ul class='citations'>")
        for c in d.citations:
            about = ", ".join(c.get("obligations", []) + c.get("elements", []))
            out.append(f"<li><a href='{E(c['url'])}'>{E(c['url'])}</a> (version "
                       f"{E(c['version'])}, {E(c['where'])}) for {E(about)}: "
                       f"{E(c.get('says', ''))}</li>")
        out.append("</ul>")
    # obligations x modes: how each obligation of each mode's bundle is evidenced
    obs = [o for o in rows[0].obligations] if rows else []
    for r in rows:
        obs += [o for o in r.obligations if o not in obs]
    out.append("<table class='obligations'><tr><th>obligation</th>"
               + "".join(f"<th>{r.mode}</th>" for r in rows) + "</tr><tr><th>class</th>"
               + "".join(f"<td style='background:{COLOURS[r.cls]}' title='"
                         f"{E('; '.join(r.rules))}'>{r.cls}</td>" for r in rows) + "</tr>")
    for o in obs:
        out.append(f"<tr><th>{o}</th>" + "".join(
            _evidence_cell(r.obligations[o]) if o in r.obligations else "<td>-</td>"
            for r in rows) + "</tr>")
    out.append("</table><p>rules: " + "; ".join(
        f"<b>{r.mode}</b> {E(', '.join(r.rules))}" for r in rows) + "</p></section>")
    return "\n".join(out)


def _sweep_svg(target: str) -> str:
    """Resident blocks lost by the 60-block claim against a 70-block request, per usable pool
    size, per policy, on one of our targets (checker/cli_litmus.sweep_rows)."""
    from kvclaims.checker.cli_litmus import sweep_rows
    sizes = list(range(60, 141, 10))
    rows = sweep_rows(60, 70, sizes, list(SWEEP_POLICIES), target)
    W, H, L, B = 520, 240, 50, 30
    x = lambda u: L + (u - sizes[0]) * (W - L - 10) / (sizes[-1] - sizes[0])
    y = lambda v: H - B - v * (H - B - 10) / 60
    colours = ("#d73027", "#fc8d59", "#1a9850", "#4575b4")
    parts = [f"<svg class='sweep' width='{W}' height='{H + 20 * len(SWEEP_POLICIES)}' "
             f"xmlns='http://www.w3.org/2000/svg'>",
             f"<line x1='{L}' y1='{H - B}' x2='{W - 10}' y2='{H - B}' stroke='black'/>",
             f"<line x1='{L}' y1='10' x2='{L}' y2='{H - B}' stroke='black'/>"]
    for u in sizes:
        parts.append(f"<text x='{x(u) - 8}' y='{H - B + 14}' font-size='10'>{u}</text>")
    for v in (0, 30, 60):
        parts.append(f"<text x='{L - 24}' y='{y(v) + 4}' font-size='10'>{v}</text>")
    parts.append(f"<text x='{W / 2 - 40}' y='{H - 2}' font-size='11'>usable pool blocks</text>")
    for k, pol in enumerate(SWEEP_POLICIES):
        pts = " ".join(f"{x(r['usable']):.1f},{y(r['resident_blocks_lost']) - k:.1f}"
                       for r in rows if r["policy"] == pol)
        parts.append(f"<polyline fill='none' stroke='{colours[k]}' stroke-width='2' "
                     f"points='{pts}'/>")
        parts.append(f"<text x='{L}' y='{H + 14 + 20 * k}' font-size='11' "
                     f"fill='{colours[k]}'>{pol}: resident blocks lost</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def _traces(target: str) -> str:
    from kvclaims.checker.litmus import LITMUS_DIR, load_scenario, run_case
    out = []
    for lid, variant, policy in COUNTEREXAMPLES:
        res = run_case(load_scenario(LITMUS_DIR / f"{lid}.toml"), variant, policy, target)
        broken = res.observed.get("broken_obligations", [])
        out.append(f"<h4>{lid} ({variant}) under <code>{policy}</code> on <code>{target}"
                   f"</code>: breaks {', '.join(broken) or 'nothing'}</h4><ol class='trace'>"
                   + "".join(f"<li><code>{E(s)}</code></li>" for s in res.steps_taken)
                   + "</ol><p>" + E(", ".join(f"{k}={v}" for k, v in res.observed.items()))
                   + "</p>")
    return "\n".join(out)


def _own_target(path: str) -> str:
    """Sweep and counterexamples for a descriptor of one of our targets; a target that cannot
    run here (vLLM not installed) is said so, not faked with another one's results."""
    d = load(path)
    if not d.targets:
        return ""
    target = d.targets[0]
    try:
        body = _sweep_svg(target) + _traces(target)
    except ImportError as e:
        body = f"<p>target <code>{E(target)}</code> cannot run here ({E(str(e))}).</p>"
    return (f"<section class='own'><h2>{E(d.runtime)}: capacity sweep and counterexample "
            f"traces on target <code>{E(target)}</code></h2><p>A 60-block hard claim against "
            f"a 70-block request: under <code>hard_demote</code> the blocks are lost only after "
            f"the demotion event (O4), under <code>native</code> and <code>soft_priority</code> "
            f"silently.</p>{body}</section>")


CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #999;padding:4px 8px;
font-size:13px;text-align:left}.matrix td.cell{min-width:9em;font-weight:bold}
.key{display:inline-block;padding:2px 6px;margin-right:6px;font-size:12px}
.ev-machine{background:#1a9850;color:#fff}.ev-cited{background:#d9ef8b}
.ev-stale{background:#d73027;color:#fff}.ev-missing{background:#eee}
small{font-weight:normal;color:#555}"""


def write_html(rows: List[Row], out: Path) -> None:
    by_desc: Dict[str, List[Row]] = {}
    for r in rows:
        by_desc.setdefault(r.descriptor, []).append(r)
    body = [f"<h1>Resident KV claim conformance profiles</h1>",
            "<p>Each (runtime, protection mode) classified fail-closed "
            "(docs/CONTRACT.md section 9) by <code>kvclaims conform</code>.</p>",
            _matrix(rows)]
    # one sweep and one set of traces per target of ours, however many descriptors name it
    seen, own = set(), []
    for p in by_desc:
        targets = load(p).targets
        if targets and targets[0] not in seen:
            seen.add(targets[0])
            own.append(_own_target(p))
    body += own
    body += [_descriptor_section(p, rs) for p, rs in by_desc.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>kvclaims "
                   f"conformance</title><style>{CSS}</style></head><body>"
                   + "\n".join(body) + "</body></html>\n", encoding="utf-8")
