"""A third reading of the spec's one definition: staged into straight-line code.

The explorer needs the concrete interpretation, but running the generic interpreter (one
dataclass per state, one closure per `ops` call) costs milliseconds per state.  So, for one
fixed configuration and policy, each action instance's guard and effect and each obligation is
run once under the SYMBOLIC interpretation (z3 terms over a symbolic state and symbolic
choices, with the configuration's constants folded in by `z3.simplify`), and the resulting terms
are printed as Python (for the explorer) or as Promela (for the SPIN comparison).  Nothing is
written by hand twice: the code printed here is the spec's own definition, evaluated early.
`tests/test_explore.py` (test_staged_spec_equals_concrete_interpreter) checks it against
the CONCRETE interpreter on sampled states.

A state is a flat tuple in `flat_fields` order; a choice vector is a tuple in the order of the
action's `choices(cfg, pol)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import z3

from kvclaims.spec.actions import ACTIONS, Choice, Step, successor
from kvclaims.spec.algebra import SYMBOLIC as Z
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config, State, build_state, flat_fields, initial_state

from .symbolic import lift_config

_K = z3.Z3_OP_ANUM


class Printer:
    """Prints a z3 term DAG as code: shared subterms become numbered temporaries."""

    def __init__(self, lang: str, var_name: Callable[[str], str]):
        assert lang in ("python", "promela")
        self.lang = lang
        self.var_name = var_name
        self.lines: List[str] = []
        self.memo: Dict[int, str] = {}
        self.temps: List[Tuple[str, str, str]] = []   # (name, sort, code)
        self.refs: Dict[int, int] = {}

    def count(self, e):
        stack = [e]
        while stack:
            x = stack.pop()
            k = x.get_id()
            self.refs[k] = self.refs.get(k, 0) + 1
            if self.refs[k] == 1:
                stack.extend(x.children())

    def expr(self, e) -> str:
        k = e.get_id()
        if k in self.memo:
            return self.memo[k]
        code = self._print(e)
        if self.refs.get(k, 0) > 1 and e.num_args() > 0:
            name = f"t{len(self.temps)}"
            self.temps.append((name, "bool" if z3.is_bool(e) else "int", code))
            code = name
        self.memo[k] = code
        return code

    def _print(self, e) -> str:
        py = self.lang == "python"
        op = e.decl().kind()
        a = [self.expr(c) for c in e.children()]
        if op == z3.Z3_OP_TRUE:
            return "True" if py else "true"
        if op == z3.Z3_OP_FALSE:
            return "False" if py else "false"
        if op == z3.Z3_OP_ANUM:
            return str(e.as_long()) if e.as_long() >= 0 else f"({e.as_long()})"
        if op == z3.Z3_OP_UNINTERPRETED and e.num_args() == 0:
            return self.var_name(e.decl().name())
        land, lor, lnot = (" and ", " or ", "not ") if py else (" && ", " || ", "!")
        if op == z3.Z3_OP_AND:
            return "(" + land.join(a) + ")"
        if op == z3.Z3_OP_OR:
            return "(" + lor.join(a) + ")"
        if op == z3.Z3_OP_NOT:
            return f"({lnot}{a[0]})"
        if op == z3.Z3_OP_IMPLIES:
            return f"(({lnot}{a[0]}){lor}{a[1]})"
        if op == z3.Z3_OP_ITE:
            return f"({a[1]} if {a[0]} else {a[2]})" if py else f"({a[0]} -> {a[1]} : {a[2]})"
        if op in (z3.Z3_OP_EQ, z3.Z3_OP_IFF):
            return f"({a[0]} == {a[1]})"
        if op == z3.Z3_OP_XOR:
            return f"({a[0]} != {a[1]})"
        if op == z3.Z3_OP_DISTINCT:
            return "(" + land.join(f"({a[i]} != {a[j]})" for i in range(len(a))
                                   for j in range(i + 1, len(a))) + ")"
        binops = {z3.Z3_OP_LE: "<=", z3.Z3_OP_LT: "<", z3.Z3_OP_GE: ">=", z3.Z3_OP_GT: ">"}
        if op in binops:
            return f"({a[0]} {binops[op]} {a[1]})"
        if op == z3.Z3_OP_ADD:
            return "(" + " + ".join(a) + ")"
        if op == z3.Z3_OP_SUB:
            return "(" + " - ".join(a) + ")"
        if op == z3.Z3_OP_MUL:
            return "(" + " * ".join(a) + ")"
        if op == z3.Z3_OP_UMINUS:
            return f"(-{a[0]})"
        raise NotImplementedError(f"cannot print z3 term {e.decl()} ({e.sexpr()[:80]})")

    def body(self, roots) -> Tuple[List[Tuple[str, str, str]], List[str]]:
        for r in roots:
            self.count(r)
        out = [self.expr(r) for r in roots]
        return self.temps, out


@dataclass
class CompiledInstance:
    """One action instance (kind + slots) with its guard and effect as Python functions of
    (state tuple, choice tuple)."""
    action: str
    slots: Tuple[int, ...]
    choices: List[Choice]
    guard: Callable[[tuple, tuple], bool]
    effect: Callable[[tuple, tuple], tuple]
    guard_z3: Any = None
    effect_z3: Any = None

    def step(self, ch: tuple) -> Step:
        return Step(self.action, self.slots, tuple((c.name, v) for c, v in zip(self.choices, ch)))


@dataclass
class CompiledSpec:
    cfg: Config
    pol: Policy
    names: List[str]                    # flat field names, the tuple layout
    bools: List[bool]                   # whether each field is boolean
    instances: List[CompiledInstance]
    invariants: Dict[str, Callable[[tuple], bool]]
    invariants_z3: Dict[str, Any]
    sym: List[Any]                      # the z3 constant of each field
    all_hold: Callable[[tuple], bool] = None   # every obligation at once (the fast path)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def initial(self) -> tuple:
        return to_tuple(initial_state(self.cfg))

    def state(self, t: tuple) -> State:
        return from_tuple(self.cfg, t)


def to_tuple(s: State) -> tuple:
    return tuple(v for _, v in flat_fields(s))


def from_tuple(cfg: Config, t: tuple) -> State:
    vals = dict(zip((n for n, _ in flat_fields(initial_state(cfg))), t))
    return build_state(cfg.K, cfg.R, lambda n, kind: bool(vals[n]) if kind == "bool"
                       else int(vals[n]))


def _pyfunc(name: str, params: str, temps, result: str, env: dict):
    lines = [f"def {name}({params}):"]
    lines += [f"    {t} = {code}" for t, _, code in temps]
    lines.append(f"    return {result}")
    src = "\n".join(lines)
    exec(compile(src, f"<kvclaims:{name}>", "exec"), env)
    return env[name], src


def _sym_state(K, R):
    mk = lambda n, kind: z3.Bool(f"S|{n}") if kind == "bool" else z3.Int(f"S|{n}")
    return build_state(K, R, mk)


def symbolic_pieces(cfg: Config, pol: Policy):
    """The spec's guards, effects and obligations over one symbolic state, with the concrete
    configuration folded in: [(action, slots, choices, guard, [field terms])], {ob: term},
    field names, and the state's symbolic constants."""
    zcfg = lift_config(cfg)
    s = _sym_state(cfg.K, cfg.R)
    fl = flat_fields(s)
    names = [n for n, _ in fl]
    sym = [v for _, v in fl]
    pieces = []
    for name, kind in ACTIONS.items():
        for slots in kind.slots(cfg):
            chs = kind.choices(cfg, pol)
            ch = {c.name: (z3.Bool(f"C|{c.name}") if c.sort == "bool" else z3.Int(f"C|{c.name}"))
                  for c in chs}
            g = z3.simplify(_term(kind.guard(Z, zcfg, pol, s, slots, ch)))
            s2, _ = successor(Z, zcfg, pol, s, Step(name, slots), choices=ch)
            eff = [z3.simplify(_term(v)) for _, v in flat_fields(s2)]
            pieces.append((name, slots, chs, g, eff))
    obs = {ob: z3.simplify(_term(inv.holds(Z, zcfg, pol, s))) for ob, inv in OBLIGATIONS.items()}
    return pieces, obs, names, sym


def _term(v):
    if isinstance(v, z3.ExprRef):
        return v
    if isinstance(v, bool):
        return z3.BoolVal(v)
    return z3.IntVal(int(v))


_CACHE: Dict[tuple, CompiledSpec] = {}


def compile_spec(cfg: Config, pol: Policy) -> CompiledSpec:
    key = (cfg, pol)
    if key in _CACHE:
        return _CACHE[key]
    pieces, obs, names, sym = symbolic_pieces(cfg, pol)
    idx = {n: i for i, n in enumerate(names)}
    bools = [z3.is_bool(x) for x in sym]
    insts = []
    for n, (name, slots, chs, g, eff) in enumerate(pieces):
        cidx = {c.name: k for k, c in enumerate(chs)}

        def var(v, cidx=cidx):
            kind, _, field = v.partition("|")
            return f"s[{idx[field]}]" if kind == "S" else f"c[{cidx[field]}]"
        env: dict = {}
        pg = Printer("python", var)
        temps, (gcode,) = pg.body([g])
        gfn, _ = _pyfunc(f"guard_{name}_{n}", "s, c", temps, gcode, env)
        pe = Printer("python", var)
        temps, codes = pe.body(eff)
        efn, _ = _pyfunc(f"effect_{name}_{n}", "s, c", temps, "(" + ", ".join(codes) + ",)",
                         env)
        insts.append(CompiledInstance(name, slots, chs, gfn, efn, g, eff))
    invs = {}
    for ob, term in obs.items():
        p = Printer("python", lambda v: f"s[{idx[v.partition('|')[2]]}]")
        temps, (code,) = p.body([term])
        invs[ob], _ = _pyfunc(f"inv_{ob}", "s", temps, code, {})
    p = Printer("python", lambda v: f"s[{idx[v.partition('|')[2]]}]")
    temps, (code,) = p.body([z3.simplify(z3.And(*obs.values()))])
    all_fn, _ = _pyfunc("inv_all", "s", temps, code, {})
    cs = CompiledSpec(cfg, pol, names, bools, insts, invs, obs, sym, all_fn)
    _CACHE[key] = cs
    return cs
