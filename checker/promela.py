"""A Promela model of one bounded configuration, for the SPIN comparison (bench/bench_explore.py).

Same state variables (every field of `flat_fields`, as SPIN globals), same actions (each action
instance and each choice vector within the configuration's bounds is one guarded `d_step`), same
invariant (every obligation, asserted after every step), same bounds (tick only while
clock < max_clock) and the same canonical sequence numbers as the explorer without symmetry.
The guards, effects and obligations are the spec's own, printed from the staged terms of
checker/compile.py, so the two checkers explore the same transition system; SPIN's stored-state
count is checked against the explorer's."""
from __future__ import annotations

import itertools
from typing import List

from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config

from .compile import Printer, symbolic_pieces
from .explore import Canon


def _choice_vectors(cfg: Config, action: str, choices) -> List[tuple]:
    """Every choice vector within the configuration's bounds (the guard filters the rest)."""
    owners = sorted({cc.owner for cc in cfg.claims}) if cfg.claims else [0]
    doms = []
    for c in choices:
        if c.sort == "bool":
            doms.append((False, True))
        elif c.name == "take_cached":
            doms.append(tuple(range(cfg.usable + 1)))
        elif c.name.startswith("take["):
            doms.append(tuple(range(cfg.claims[int(c.name[5:-1])].footprint + 1)))
        elif c.name == "actor":
            doms.append(tuple(owners) + (max(owners) + 1,))
        else:
            raise NotImplementedError(c.name)
    return list(itertools.product(*doms))


def promela(cfg: Config, pol: Policy, max_clock: int) -> str:
    pieces, obs, names, sym = symbolic_pieces(cfg, pol)
    import z3
    var = {n: f"v{i}" for i, n in enumerate(names)}
    bools = [z3.is_bool(x) for x in sym]
    out = [f"/* kvclaims {pol.name}: generated from the spec's staged terms */"]
    out += [f"{'bool' if b else 'short'} v{i};   /* {n} */"
            for i, (n, b) in enumerate(zip(names, bools))]
    out += [f"hidden {'byte' if b else 'short'} n{i};" for i, b in enumerate(bools)]
    options = []
    ntemps = 0
    for name, slots, chs, g, eff in pieces:
        for vec in _choice_vectors(cfg, name, chs):
            chv = {c.name: v for c, v in zip(chs, vec)}

            def vname(v, chv=chv):
                kind, _, f = v.partition("|")
                if kind == "S":
                    return var[f]
                x = chv[f]
                return ("true" if x else "false") if isinstance(x, bool) else str(x)
            sub = z3.substitute
            pairs = [((z3.Bool if c.sort == "bool" else z3.Int)(f"C|{c.name}"),
                      z3.BoolVal(chv[c.name]) if c.sort == "bool" else z3.IntVal(chv[c.name]))
                     for c in chs]
            g2 = z3.simplify(sub(g, *pairs)) if pairs else g
            if z3.is_false(g2):
                continue
            eff2 = [z3.simplify(sub(e, *pairs)) if pairs else e for e in eff]
            # the guard must be the d_step's first statement: printed without temporaries
            gcode = Printer("promela", vname).expr(g2)
            p = Printer("promela", vname)
            temps, ecodes = p.body(eff2)
            ntemps = max(ntemps, len(temps))
            tick = f" && (v{names.index('clock')} < {max_clock})" if name == "tick" else ""
            body = [f"t{k} = {code};" for k, (t, s, code) in enumerate(temps)]
            body += [f"n{i} = {c};" for i, c in enumerate(ecodes)]
            body += [f"v{i} = n{i};" for i in range(len(ecodes))]
            options.append((f"({gcode}){tick}", body))
    out += [f"hidden int t{k};" for k in range(ntemps)]
    out.append("")
    inv = Printer("promela", lambda v: var[v.partition("|")[2]])
    invcode = inv.expr(z3.simplify(z3.And(*obs.values())))     # no temporaries: one expression
    out.append("inline canon() {")
    out += ["  " + line for line in _canon_code(cfg, pol, names)]
    out.append("}")
    out.append("")
    out.append("active proctype spec() {")
    init = _initial(cfg, names)
    out.append("  d_step { " + " ".join(f"v{i} = {v};" for i, v in enumerate(init)) + " }")
    out.append("  do")
    for guard, body in options:
        out.append(f"  :: d_step {{ {guard} -> {' '.join(body)} canon(); "
                   f"assert({invcode}) }}")
    out.append("  od")
    out.append("}")
    return "\n".join(out) + "\n"


def _initial(cfg, names):
    from .compile import to_tuple
    from kvclaims.spec.state import initial_state
    t = to_tuple(initial_state(cfg))
    return [("true" if v else "false") if isinstance(v, bool) else str(v) for v in t]


def _canon_code(cfg, pol, names) -> List[str]:
    """Per claim, each sequence number replaced by its rank among the claim's nonzero ones;
    the global counter by the largest rank (Canon without symmetry)."""
    lines = []
    seq = f"v{names.index('seq')}"
    tops = []
    for q in range(cfg.K):
        fs = [f"v{names.index(f'claims[{q}].{f}')}" for f in Canon.SEQ_FIELDS]
        # rank of x: number of distinct nonzero values <= x among fs
        def distinct_le(x):
            terms = []
            for k, v in enumerate(fs):
                firsts = " && ".join(f"{fs[m]} != {v}" for m in range(k)) or "true"
                terms.append(f"(({v} != 0 && {v} <= {x} && {firsts}) -> 1 : 0)")
            return " + ".join(terms)
        for k, f in enumerate(fs):
            lines.append(f"n{k} = ({f} == 0 -> 0 : {distinct_le(f)});")
        for k, f in enumerate(fs):
            lines.append(f"{f} = n{k};")
        tops.append(f"(({fs[0]} > {fs[1]} -> {fs[0]} : {fs[1]}) > ({fs[2]} > {fs[3]} -> "
                    f"{fs[2]} : {fs[3]}) -> ({fs[0]} > {fs[1]} -> {fs[0]} : {fs[1]}) : "
                    f"({fs[2]} > {fs[3]} -> {fs[2]} : {fs[3]}))")
    lines.append(f"{seq} = 0;")
    for t in tops:
        lines.append(f"{seq} = ({t} > {seq} -> {t} : {seq});")
    return lines
