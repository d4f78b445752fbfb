"""Bounded explicit-state exploration of the spec (breadth first, shortest violations first).

The actions are the spec's own guards and effects, staged for one configuration and policy
(checker/compile.py).  Every obligation is checked in every reachable state; for each violated
obligation the first state found breaking it is at minimal depth, and its path is turned back
into concrete spec steps and replayed through the concrete interpreter (a path the spec does not
reproduce is an internal error, never a verdict).

Bounds and canonical states.  The state space is made finite, and smaller, three ways:
  * a clock bound: `tick` is taken only while clock < max_clock (TLC's CONSTRAINT);
  * canonical sequence numbers: guards never read sequence numbers, and obligations only
    compare the sequence numbers of one claim with each other and with 0 (O4, O9), so each
    claim's (acc, mat, end, loss) numbers are replaced by their ranks (0 kept) and the global
    counter by the largest rank.  This is a bisimulation for every obligation, and it is what
    makes repeated events (a prefix hit, a re-materialization) return to a known state;
  * symmetry (optional): claims with identical configuration are interchangeable, and so are
    requests; a state is replaced by the least of its permutations (claims and requests
    together, with the requests' blocking/named vectors permuted along with the claims).
    Time is a symmetry too: when no claim can expire, the clock and acceptance times are read
    by no guard and no obligation, so they are set to 0 (a non-expiring claim's acceptance
    time likewise).
Neither changes the depth at which a violation first occurs, which is why the explorer and the
z3 BMC agree on shortest counterexample lengths.
"""
from __future__ import annotations

import itertools
import math
import operator
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config
from kvclaims.spec.vocab import Mode

from .bmc import Trace
from .compile import CompiledSpec, compile_spec
from .replay import replay


# --- canonical states ------------------------------------------------------------------------

class Canon:
    """Canonical representative of a state tuple (sequence ranks, optional symmetry)."""

    SEQ_FIELDS = ("acc_seq", "mat_seq", "end_seq", "loss_seq")

    def __init__(self, cs: CompiledSpec, symmetry: bool):
        cfg = cs.cfg
        ix = {n: i for i, n in enumerate(cs.names)}
        self.seq = ix["seq"]
        self.claim_seq = [tuple(ix[f"claims[{i}].{f}"] for f in self.SEQ_FIELDS)
                          for i in range(cfg.K)]
        self.claim_span = [[ix[n] for n in cs.names if n.startswith(f"claims[{i}].")]
                           for i in range(cfg.K)]
        self.req_span = [[ix[n] for n in cs.names if n.startswith(f"requests[{j}].")]
                         for j in range(cfg.R)]
        # inside a request block: which entries are per-claim vectors
        self.req_vec = []
        for j in range(cfg.R):
            names = [n for n in cs.names if n.startswith(f"requests[{j}].")]
            pre = [k for k, n in enumerate(names) if "[" not in n.split(".", 1)[1]]
            named = [names.index(f"requests[{j}].named[{i}]") for i in range(cfg.K)]
            blocking = [names.index(f"requests[{j}].blocking[{i}]") for i in range(cfg.K)]
            self.req_vec.append((pre, named, blocking))
        self.top = [i for i, n in enumerate(cs.names) if "[" not in n]
        self.claim_groups = _groups(cfg.claims)
        self.req_groups = _groups(cfg.requests)
        self.symmetry = symmetry and (any(len(g) > 1 for g in self.claim_groups)
                                      or any(len(g) > 1 for g in self.req_groups))
        self.n = len(cs.names)
        # time-shift symmetry: the clock only matters through expiring claims
        expiring = [cc.mode == int(Mode.EXPIRING) and cc.duration > 0 for cc in cfg.claims]
        self.dead_clock = [ix[f"claims[{i}].acc_clock"] for i in range(cfg.K) if not expiring[i]]
        if not any(expiring):
            self.dead_clock.append(ix["clock"])
        if not symmetry:
            self.dead_clock = []
        # With the clock reset above, `tick` stays enabled forever and a deferred request's
        # `waited` counter would grow without bound.  Only `waited >= response_ticks` (tick's
        # guard) and `waited <= response_ticks` (O14) read it, so every value past
        # response_ticks behaves alike: saturating there is a bisimulation.
        self.waited = ([ix[f"requests[{j}].waited"] for j in range(cfg.R)]
                       if ix["clock"] in self.dead_clock else [])
        self.waited_cap = cfg.response_ticks + 1
        self.symmetry = self.symmetry or bool(self.dead_clock)
        self._orbit = self._orbit_maps(cs)

    # Enumerating the whole symmetry group as precomputed index maps costs one C-level
    # itemgetter call (and one tuple comparison) per group element.  Measured on the
    # bench-explore configuration: 4 maps (2 claims x 2 requests) halve the time of the sorting
    # search (_sym); 36 maps (3 x 3) are slower than it, so larger groups keep _sym.
    MAX_ORBIT_MAPS = 8

    def _orbit_maps(self, cs: CompiledSpec):
        """One itemgetter per element of the symmetry group (permutations within each group
        of interchangeable claims, times those within each group of interchangeable requests),
        each giving the permuted state in the original layout.  The least image over the whole
        group is the lexicographic least member of the orbit: the same representative _sym
        finds by sorting, at a fraction of the cost."""
        if not any(len(g) > 1 for g in self.claim_groups + self.req_groups):
            return None
        size = 1
        for g in self.claim_groups + self.req_groups:
            size *= math.factorial(len(g))
        if size > self.MAX_ORBIT_MAPS:
            return None
        K, R = len(self.claim_span), len(self.req_span)

        def perms(groups, n):
            out = []
            for combo in itertools.product(*[itertools.permutations(g) for g in groups]):
                p = list(range(n))
                for g, order in zip(groups, combo):
                    for pos, old in zip(g, order):
                        p[pos] = old
                out.append(p)
            return out
        maps = []
        for cp in perms(self.claim_groups, K):
            for rp in perms(self.req_groups, R):
                m = list(range(self.n))
                for new, old in enumerate(cp):
                    for a, b in zip(self.claim_span[new], self.claim_span[old]):
                        m[a] = b
                for new, old in enumerate(rp):
                    dst, src = self.req_span[new], self.req_span[old]
                    pre, named, blocking = self.req_vec[new]
                    for k in pre:
                        m[dst[k]] = src[k]
                    for i in range(K):
                        m[dst[named[i]]] = src[named[cp[i]]]
                        m[dst[blocking[i]]] = src[blocking[cp[i]]]
                maps.append(operator.itemgetter(*m))
        return maps

    def __call__(self, t: tuple) -> tuple:
        t = list(t)
        top = 0
        for q in self.claim_seq:
            vals = sorted({t[k] for k in q} - {0})
            if vals:
                if len(vals) > top:
                    top = len(vals)
                r = {v: n + 1 for n, v in enumerate(vals)}
                for k in q:
                    if t[k]:
                        t[k] = r[t[k]]
        t[self.seq] = top
        for k in self.dead_clock:
            t[k] = 0
        for k in self.waited:
            if t[k] > self.waited_cap:
                t[k] = self.waited_cap
        if not self.symmetry:
            return tuple(t)
        if self._orbit is not None:
            return min(g(t) for g in self._orbit)
        return self._sym(t)

    def _sym(self, t: list) -> tuple:
        claims = [tuple(t[k] for k in span) for span in self.claim_span]
        # order each group of interchangeable claims by their own state; ties are resolved by
        # trying every order of the tied claims and keeping the least full state
        orders = []
        for g in self.claim_groups:
            srt = sorted(g, key=lambda i: claims[i])
            runs = [list(v) for _, v in itertools.groupby(srt, key=lambda i: claims[i])]
            orders.append([list(itertools.chain.from_iterable(p)) for p in
                           itertools.product(*[itertools.permutations(r) for r in runs])])
        best = None
        for combo in itertools.product(*orders):
            perm = [0] * len(claims)           # perm[new position] = old claim index
            for g, order in zip(self.claim_groups, combo):
                for pos, old in zip(g, order):
                    perm[pos] = old
            reqs = []
            for span, (pre, named, blocking) in zip(self.req_span, self.req_vec):
                blk = [t[k] for k in span]
                # scalar fields before the per-claim vectors and after them, in layout order
                head = [k for k in pre if not named or k < named[0]]
                tail = [k for k in pre if named and k > named[0]]
                reqs.append(tuple(blk[k] for k in head)
                            + tuple(blk[named[perm[i]]] for i in range(len(perm)))
                            + tuple(blk[blocking[perm[i]]] for i in range(len(perm)))
                            + tuple(blk[k] for k in tail))
            rperm = [0] * len(reqs)
            for g in self.req_groups:
                for pos, old in zip(g, sorted(g, key=lambda j: reqs[j])):
                    rperm[pos] = old
            cand = (tuple(t[k] for k in self.top)
                    + tuple(itertools.chain.from_iterable(claims[perm[i]]
                                                          for i in range(len(claims))))
                    + tuple(itertools.chain.from_iterable(reqs[rperm[j]]
                                                          for j in range(len(reqs)))))
            if best is None or cand < best:
                best = cand
        return best


def _groups(items) -> List[List[int]]:
    by: Dict[object, List[int]] = {}
    for i, x in enumerate(items):
        by.setdefault(x, []).append(i)
    return list(by.values())


# --- choices ---------------------------------------------------------------------------------

def _compositions(total: int, bounds: List[int]):
    """Tuples t with sum(t) == total and 0 <= t[i] <= bounds[i]."""
    if not bounds:
        if total == 0:
            yield ()
        return
    rest_cap = sum(bounds[1:])
    for x in range(max(0, total - rest_cap), min(bounds[0], total) + 1):
        for tail in _compositions(total - x, bounds[1:]):
            yield (x,) + tail


def choice_domain(cs: CompiledSpec, inst) -> Callable[[tuple], List[tuple]]:
    """Every choice vector the guard can accept (and a few it will reject).  Values that the
    spec cannot tell apart are enumerated once: the release actor is an owner or not an owner;
    a head flag only matters for an object that loses blocks."""
    cfg = cs.cfg
    names = [c.name for c in inst.choices]
    if not names:
        return lambda t: [()]
    ix = {n: i for i, n in enumerate(cs.names)}
    if inst.action == "admit":
        need = cfg.requests[inst.slots[0]].need
        e, cached = ix["empty"], ix["cached"]
        lohi = [(ix[f"claims[{i}].lo"], ix[f"claims[{i}].hi"]) for i in range(cfg.K)]
        pos = {n: k for k, n in enumerate(names)}
        K = cfg.K

        def dom(t):
            rest = need - min(t[e], need)
            bounds = [t[h] - t[lo] for lo, h in lohi]
            out = []
            for tc in range(0, min(t[cached], rest) + 1):
                for take in _compositions(rest - tc, bounds):
                    heads = [(False, True) if take[i] > 0 else (False,) for i in range(K)]
                    for hd in itertools.product(*heads):
                        for adm in (True, False):
                            v = [None] * len(names)
                            v[pos["admit"]] = adm
                            v[pos["take_cached"]] = tc
                            for i in range(K):
                                v[pos[f"take[{i}]"]] = take[i]
                                v[pos[f"head[{i}]"]] = hd[i]
                            out.append(tuple(v))
            return out
        return dom
    doms = []
    for c in inst.choices:
        if c.sort == "bool":
            doms.append((False, True))
        elif c.name == "actor":
            owners = sorted({cc.owner for cc in cfg.claims})
            doms.append(tuple(owners) + (max(owners) + 1,))
        else:
            raise NotImplementedError(f"no finite domain for choice {c.name} of {inst.action}")
    fixed = list(itertools.product(*doms))
    return lambda t: fixed


# --- exploration -----------------------------------------------------------------------------

@dataclass
class ExploreResult:
    policy: str
    config: Config
    symmetry: bool
    max_depth: Optional[int]
    max_clock: int
    distinct: int = 0
    transitions: int = 0
    depth: int = 0                      # deepest BFS level reached
    complete: bool = False              # exhausted the (clock-bounded) space, no depth cut
    per_action: Dict[str, int] = field(default_factory=dict)
    first_violation: Dict[str, int] = field(default_factory=dict)   # obligation -> state id
    traces: Dict[str, Trace] = field(default_factory=dict)
    seconds: float = 0.0
    graph: object = None                # networkx.DiGraph when asked for

    @property
    def states_per_second(self) -> float:
        return self.distinct / self.seconds if self.seconds > 0 else 0.0

    def verdict(self, ob: str) -> str:
        if ob in self.first_violation:
            return "violated"
        return "holds" if self.complete else "holds_to_bound"

    def summary(self) -> str:
        bad = sorted(self.traces, key=lambda o: int(o[1:]))
        tail = ("no obligation violated" if not bad else
                "violated: " + ", ".join(f"{o} (depth {self.traces[o].depth})" for o in bad))
        kind = "exhaustive" if self.complete else f"depth-bounded at {self.max_depth}"
        return (f"{self.policy}: {self.distinct} distinct states, {self.transitions} transitions, "
                f"depth {self.depth}, {kind}, symmetry {'on' if self.symmetry else 'off'}, "
                f"{self.seconds:.2f} s ({self.states_per_second:.0f} states/s); {tail}")

    def to_json(self) -> dict:
        return {"policy": self.policy, "symmetry": self.symmetry, "max_depth": self.max_depth,
                "max_clock": self.max_clock, "distinct_states": self.distinct,
                "transitions": self.transitions, "depth": self.depth, "complete": self.complete,
                "per_action": dict(sorted(self.per_action.items())),
                "seconds": round(self.seconds, 3),
                "states_per_second": round(self.states_per_second, 1),
                "verdicts": {ob: self.verdict(ob) for ob in OBLIGATIONS},
                "counterexample_depth": {ob: tr.depth for ob, tr in sorted(self.traces.items())}}


class Progress:
    """TLC-style progress on stderr: a redrawn line on a terminal, a line every few seconds
    otherwise."""

    def __init__(self, stream=None, every: float = 2.0):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.last = time.perf_counter()

    def __call__(self, depth, distinct, queue, t0, final=False):
        now = time.perf_counter()
        if not final and now - self.last < self.every:
            return
        self.last = now
        rate = distinct / max(now - t0, 1e-9)
        msg = (f"Progress({depth}): {distinct} states found, {rate:.0f} states/s, "
               f"{queue} states left on queue")
        if self.tty:
            done = distinct / max(distinct + queue, 1)
            bar = "#" * int(20 * done)
            self.stream.write(f"\r[{bar:<20}] {msg}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def explore(cfg: Config, pol: Policy, max_depth: Optional[int] = None, max_clock: int = 2,
            symmetry: bool = True, graph: bool = False, traces: bool = True,
            progress: Optional[Callable] = None, max_states: Optional[int] = None
            ) -> ExploreResult:
    """Breadth-first exploration of every state reachable from the initial state within the
    bounds; every obligation checked in every state."""
    cs = compile_spec(cfg, pol)
    canon = Canon(cs, symmetry)
    res = ExploreResult(pol.name, cfg, canon.symmetry, max_depth, max_clock)
    clock_i = cs.index("clock")
    insts = [(k, inst, choice_domain(cs, inst), inst.action == "tick")
             for k, inst in enumerate(cs.instances)]
    invs = list(cs.invariants.items())
    all_hold = cs.all_hold
    per_action = Counter()
    G = None
    if graph:
        import networkx as nx
        G = nx.DiGraph()

    t0 = time.perf_counter()
    init = canon(cs.initial())
    seen = {init: 0}
    states = [init]
    parent = [-1]
    via: List[Optional[Tuple[int, tuple]]] = [None]
    level = [0]
    first = res.first_violation

    def check(sid, t):
        if not all_hold(t):
            for ob, f in invs:
                if ob not in first and not f(t):
                    first[ob] = sid

    check(0, init)
    if G is not None:
        G.add_node(0, depth=0)
    queue = deque([0])
    transitions = 0
    deepest = 0
    cut = False
    while queue:
        sid = queue.popleft()
        t = states[sid]
        d = level[sid]
        if progress is not None:
            progress(d, len(states), len(queue), t0)
        if max_depth is not None and d >= max_depth:
            cut = True
            continue
        if max_states is not None and len(states) >= max_states:
            cut = True
            break
        for k, inst, dom, is_tick in insts:
            if is_tick and t[clock_i] >= max_clock:
                continue
            g, eff = inst.guard, inst.effect
            for ch in dom(t):
                if not g(t, ch):
                    continue
                t2 = canon(eff(t, ch))
                transitions += 1
                per_action[inst.action] += 1
                nid = seen.get(t2)
                if nid is None:
                    nid = len(states)
                    seen[t2] = nid
                    states.append(t2)
                    parent.append(sid)
                    via.append((k, ch))
                    level.append(d + 1)
                    if d + 1 > deepest:
                        deepest = d + 1
                    check(nid, t2)
                    queue.append(nid)
                    if G is not None:
                        G.add_node(nid, depth=d + 1)
                if G is not None:
                    if G.has_edge(sid, nid):
                        G[sid][nid]["count"] += 1
                    else:
                        G.add_edge(sid, nid, action=inst.action, count=1)
    res.seconds = time.perf_counter() - t0
    if progress is not None:
        progress(deepest, len(states), len(queue), t0, final=True)
    res.distinct = len(states)
    res.transitions = transitions
    res.depth = deepest
    res.complete = not cut
    res.per_action = dict(per_action)
    res.graph = G
    if traces:
        for ob, sid in first.items():
            res.traces[ob] = _trace(cs, canon, states, parent, sid, ob)
    res._states, res._parent, res._level = states, parent, level   # for path queries
    return res


def path_to(states, parent, sid) -> List[int]:
    out = []
    while sid != -1:
        out.append(sid)
        sid = parent[sid]
    return out[::-1]


def _trace(cs: CompiledSpec, canon: Canon, states, parent, sid, ob) -> Trace:
    """Turn a path of canonical states into concrete spec steps from the real initial state:
    at each step, find a step of the raw state whose canonical successor is the next one."""
    ids = path_to(states, parent, sid)
    raw = cs.initial()
    steps = []
    for nxt in ids[1:]:
        target = states[nxt]
        found = None
        for inst in cs.instances:
            for ch in choice_domain(cs, inst)(raw):
                if inst.guard(raw, ch):
                    t2 = inst.effect(raw, ch)
                    if canon(t2) == target:
                        found = (inst, ch, t2)
                        break
            if found:
                break
        if found is None:     # pragma: no cover - would be a canonicalization bug
            raise RuntimeError(f"{cs.pol.name}/{ob}: cannot reconstruct step {len(steps) + 1}")
        inst, ch, raw = found
        steps.append(inst.step(ch))
    st = replay(cs.cfg, cs.pol, steps, violates=ob)
    return Trace(cs.pol.name, ob, cs.cfg, steps, st)


def graph_stats(G) -> dict:
    """Statistics of the state graph: states, edges, depth (longest shortest path from the
    initial state), strongly connected components, dead ends, edges per action."""
    import networkx as nx
    dist = nx.single_source_shortest_path_length(G, 0)
    per = Counter(d["action"] for _, _, d in G.edges(data=True))
    return {"states": G.number_of_nodes(), "edges": G.number_of_edges(),
            "depth": max(dist.values()), "sccs": nx.number_strongly_connected_components(G),
            "dead_ends": sum(1 for n in G if G.out_degree(n) == 0),
            "edges_per_action": dict(sorted(per.items()))}
