"""``kvclaims load``: the patched vLLM engine driven like a server, with the observer as oracle.

Several tenants send random work to a live engine built with ``ClaimScheduler`` (in-process,
or the multi-process engine ``vllm serve`` runs): plain prompts of random size (some larger
than the pool can hold beside the protected claims), claims on their own prefixes (a system
prompt every tenant shares by content, conversations that extend it), releases by the owner
(and by others), reuse of claimed prefixes, malformed claims. The run is bounded in requests
and seconds and stops by itself. The oracle is the project's observer
(kvclaims.model.observer) over the engine's own telemetry file; the report counts submitted
and terminal requests, refusals (and those naming no claim), observer findings, episodes of
``STALL_STEPS`` engine steps without progress, and the RSS of the process that runs the
scheduler (peak, after warm-up, at the end, and the curve).

The ``stall`` scenario is issue 8's reproduction: A (60 blocks, hard claim k=60) and B
(70 blocks) added before the next step, then C (1 block); then a claim nested deeper than the
limit, then a plain request that must still be served.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.errors import UsageError
from kvclaims.options import Parser

STALL_STEPS = 50
ENGINES = ("in-process", "multi-process")
POLICIES = ("hard_refuse", "hard_demote")
SYSTEM_BLOCKS = 8


@dataclass
class LoadReport:
    engine: str
    policy: str
    seed: int
    pool_blocks: int
    cap_blocks: int
    seconds: float = 0.0
    steps: int = 0
    submitted: int = 0
    terminal: int = 0
    unfinished: int = 0
    finish_reasons: Dict[str, int] = field(default_factory=dict)
    stop_reasons: Dict[str, int] = field(default_factory=dict)
    refusals: int = 0
    refusals_naming_no_claim: int = 0
    claims_rejected: int = 0
    bad_claims: int = 0
    claims_submitted: int = 0
    claims_accepted: int = 0
    claims_harmed: int = 0
    victims_protected: int = 0
    observer_findings: int = 0
    observer_kinds: Dict[str, int] = field(default_factory=dict)
    observer_verdict: str = ""
    telemetry_events: int = 0
    stalls: int = 0
    longest_no_progress_steps: int = 0
    peak_rss_mb: float = 0.0
    rss_after_warmup_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_curve: List[Tuple[float, float]] = field(default_factory=list)
    note: str = ""
    records: Dict[str, int] = field(default_factory=dict)
    stall_states: List[Dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


# --- the engine ----------------------------------------------------------------------------------

def _prepare_env(engine: str) -> None:
    """Set before vLLM is imported: the multi-process engine runs its core (and the
    scheduler with the arbiter) in a child process, which needs block size 16 declared by
    the general plugin."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if engine == "multi-process" else "0"
    os.environ["KVCLAIMS_CPU_BLOCK_16"] = "1"
    from .vllm_engine import set_engine_env
    set_engine_env()


def build_engine(engine: str, policy: str, pool: int, cap: int, telemetry_path: str,
                 **conf: Any) -> Any:
    _prepare_env(engine)
    from vllm import LLM

    from . import vllm_adapter as va
    from .vllm_core import BLOCK_SIZE
    from .vllm_engine import engine_kwargs
    from .vllm_model import ensure_tiny_llama
    from .vllm_plugin import SCHEDULER_CLS

    va.allow_cpu_block_size(BLOCK_SIZE)
    kv = {"policy": policy, "cap_blocks": cap, "telemetry_path": telemetry_path,
          "keep_events": 1000, "identity": "client", **conf}
    return LLM(**engine_kwargs(pool, BLOCK_SIZE, ensure_tiny_llama(None),
                               scheduler_cls=SCHEDULER_CLS,
                               additional_config={"kvclaims": kv}))


def _scheduler_process(llm: Any, engine: str) -> Any:
    import psutil
    me = psutil.Process()
    if engine == "in-process":
        return me
    kids = me.children(recursive=True)
    for k in kids:
        try:
            if "EngineCore" in k.name() or "EngineCore" in " ".join(k.cmdline()):
                return k
        except psutil.Error:
            continue
    return max(kids, key=lambda k: k.memory_info().rss) if kids else me


# --- the workload --------------------------------------------------------------------------------

class Workload:
    """Random requests of several tenants; every id is unique, every prompt is tokens."""

    def __init__(self, rng: random.Random, tenants: int, pool: int, cap: int):
        from .vllm_core import fresh_token_ids, object_token_ids
        self._fresh, self._obj = fresh_token_ids, object_token_ids
        self.rng, self.tenants, self.pool, self.cap = rng, tenants, pool, cap
        self.n = 0
        self.system = object_token_ids("system-prompt", SYSTEM_BLOCKS)
        self.claims: Dict[str, Tuple[str, List[int]]] = {}    # claim id -> (tenant, prompt)

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{kind}-{self.n}"

    def next(self) -> Tuple[str, List[int], Dict[str, Any], int]:
        """(request id, prompt, extra_args, max_tokens)."""
        rng = self.rng
        t = f"t{rng.randrange(self.tenants)}"
        roll = rng.random()
        max_tokens = rng.randint(1, 4)
        usable = self.pool - 1
        if roll < 0.30:                              # a claim on the tenant's own prefix
            rid = self._id("claim")
            conv, size = rng.randrange(4), rng.randint(1, 30)
            body = self._obj(f"{t}-conv-{conv}", size) if rng.random() < 0.6 else []
            prompt = self.system + body
            blocks = len(prompt) // 16
            foot = rng.randint(1, blocks)
            start = rng.randrange(foot) if rng.random() < 0.2 else 0
            k = rng.randint(1, foot - start)
            mode = rng.choice(["hard_protected", "demotable", "demotable", "soft_priority",
                               "expiring", "best_effort"])
            claim: Dict[str, Any] = {
                # the object id names its content: one id, one prefix
                "claim_id": rid,
                "object_id": f"{t}-conv{conv}x{size}-{foot}" if body else f"{t}-sys-{foot}",
                "protection_mode": mode, "footprint_blocks": foot,
                "predicate": ({"kind": "leading_prefix_at_least", "k": k} if start == 0 else
                              {"kind": "contiguous_range", "start": start, "k": k})}
            if mode == "expiring" or rng.random() < 0.1:
                claim["duration"] = rng.choice([rng.randint(1, 40), 10 ** 12])
            self.claims[rid] = (t, prompt)
            if len(self.claims) > 64:       # the harness keeps a window, not every prompt
                del self.claims[next(iter(self.claims))]
            extra = {"kvclaims_tenant": t,
                     "kvclaims_claim": json.dumps(claim) if rng.random() < 0.5 else claim}
            return rid, prompt + self._fresh(rid, 1), extra, max_tokens
        if roll < 0.38 and self.claims:              # release (mostly by the owner)
            cid = rng.choice(list(self.claims))
            owner, _ = self.claims[cid]
            actor = owner if rng.random() < 0.8 else f"t{rng.randrange(self.tenants)}"
            rid = self._id("release")
            if actor == owner:
                self.claims.pop(cid, None)
            return (rid, self._fresh(rid, 1),
                    {"kvclaims_tenant": actor, "kvclaims_release": cid}, 1)
        if roll < 0.55 and self.claims:              # reuse of a claimed prefix
            cid = rng.choice(list(self.claims))
            _, prompt = self.claims[cid]
            rid = self._id("reuse")
            return rid, prompt + self._fresh(rid, rng.randint(0, 4)), {}, max_tokens
        if roll < 0.60:                              # a malformed claim
            rid = self._id("bad")
            bad = rng.choice([
                "[" * 5000 + "]" * 5000, '{"claim_id": ' * 20 + "1" + "}" * 20, "not json",
                {"claim_id": rid, "object_id": "x", "protection_mode": "forever",
                 "predicate": {"kind": "leading_prefix_at_least", "k": 1}},
                {"claim_id": "", "predicate": {"kind": "leading_prefix_at_least", "k": -1}}])
            return rid, self._fresh(rid, 2), {"kvclaims_tenant": t, "kvclaims_claim": bad}, 1
        rid = self._id("plain")
        if rng.random() < 0.12:                      # larger than fits beside the claims
            blocks = rng.randint(max(1, usable - self.cap + 1), usable - 1)
        else:
            blocks = rng.randint(1, 12)
        return rid, self.system + self._fresh(rid, blocks) if rng.random() < 0.3 \
            else self._fresh(rid, blocks), {}, max_tokens


# --- the run -------------------------------------------------------------------------------------

class _Stepper:
    """engine.step() with a wall-clock bound: the multi-process engine blocks in step()
    until its core has output, so a stalled core would hang the harness. The step runs in
    a daemon thread, so a step that never returns cannot keep the process from exiting."""

    def __init__(self, llm: Any, timeout: float):
        self.engine = llm.llm_engine
        self.timeout = timeout

    def step(self) -> Optional[List[Any]]:
        box: List[Any] = []
        t = threading.Thread(target=lambda: box.append(self.engine.step()), daemon=True)
        t.start()
        t.join(self.timeout)
        return box[0] if box else None


def _classify(out: Any, rep: LoadReport) -> None:
    o = out.outputs[0]
    reason = str(o.finish_reason)
    stop = o.stop_reason if isinstance(o.stop_reason, str) else ""
    rep.finish_reasons[reason] = rep.finish_reasons.get(reason, 0) + 1
    if stop.startswith("kvclaims:"):
        key = stop.split(" (")[0][len("kvclaims: "):][:70]
        rep.stop_reasons[key] = rep.stop_reasons.get(key, 0) + 1
    if stop.startswith("kvclaims: refused:"):
        rep.refusals += 1
        if stop.startswith("kvclaims: refused: blocking claims none"):
            rep.refusals_naming_no_claim += 1
    elif stop.startswith("kvclaims: claim rejected:"):
        rep.claims_rejected += 1
    elif stop.startswith("kvclaims: bad claim:"):
        rep.bad_claims += 1


def run_load(engine: str, policy: str, *, seconds: float, max_requests: int, seed: int = 0,
             tenants: int = 3, pool: int = 81, cap: int = 60, in_flight: int = 6,
             telemetry_path: Optional[str] = None, warmup: float = 0.2,
             step_timeout: float = 60.0, llm: Any = None) -> LoadReport:
    from vllm.inputs import TokensPrompt

    from . import vllm_adapter as va

    tdir = None
    if telemetry_path is None:
        tdir = tempfile.mkdtemp(prefix="kvclaims-load-")
        telemetry_path = os.path.join(tdir, "telemetry.jsonl")
    if llm is None:
        llm = build_engine(engine, policy, pool, cap, telemetry_path)
    rep = LoadReport(engine, policy, seed, pool, cap)
    proc = _scheduler_process(llm, engine)
    stepper = _Stepper(llm, step_timeout)
    rng = random.Random(seed)
    work = Workload(rng, tenants, pool, cap)
    eng = llm.llm_engine
    open_ids: set = set()
    t0 = time.monotonic()
    last_sample = -1.0
    no_progress = 0
    stop = threading.Event()

    def sample(now: float) -> None:
        nonlocal last_sample
        if now - last_sample >= 1.0:
            last_sample = now
            rss = proc.memory_info().rss / 2 ** 20
            rep.rss_curve.append((round(now, 1), round(rss, 1)))
            rep.peak_rss_mb = max(rep.peak_rss_mb, rss)

    while not stop.is_set():
        now = time.monotonic() - t0
        sample(now)
        feeding = now < seconds and rep.submitted < max_requests
        while feeding and len(open_ids) < in_flight and rep.submitted < max_requests:
            rid, prompt, extra, max_tokens = work.next()
            try:
                eng.add_request(rid, TokensPrompt(prompt_token_ids=prompt),
                                va.sampling_params(max_tokens, extra))
            except va.REQUEST_REJECTED:
                rep.finish_reasons["rejected_by_vllm"] = (
                    rep.finish_reasons.get("rejected_by_vllm", 0) + 1)
                continue
            open_ids.add(rid)
            rep.submitted += 1
        if not open_ids:
            if not feeding:
                break
            continue
        outs = stepper.step()
        rep.steps += 1
        if outs is None:
            rep.stalls += 1
            rep.note = f"engine step blocked for more than {step_timeout} s"
            break
        progressed = False
        for out in outs:
            if out.outputs and (out.outputs[0].token_ids or out.finished):
                progressed = True
            if out.finished and out.request_id in open_ids:
                open_ids.discard(out.request_id)
                rep.terminal += 1
                _classify(out, rep)
        if progressed:
            no_progress = 0
        else:
            no_progress += 1
            rep.longest_no_progress_steps = max(rep.longest_no_progress_steps, no_progress)
            if no_progress == STALL_STEPS:
                rep.stalls += 1
                if engine == "in-process" and len(rep.stall_states) < 5:
                    rep.stall_states.append(_scheduler_state(llm))
            if no_progress >= 20 * STALL_STEPS:
                rep.note = f"{no_progress} steps without progress: stopped"
                break
        if time.monotonic() - t0 > seconds * 3 + 120:
            rep.note = "ran past three times its time bound: stopped"
            break
    rep.seconds = round(time.monotonic() - t0, 1)
    if engine == "in-process":       # multi-process: the core closes it at shutdown
        from . import vllm_adapter as va
        va.engine_scheduler(llm).arbiter.close_run()
    else:
        llm.llm_engine.engine_core.shutdown()
    rep.unfinished = len(open_ids)
    rss = proc.memory_info().rss / 2 ** 20
    rep.rss_end_mb = round(rss, 1)
    rep.peak_rss_mb = round(max(rep.peak_rss_mb, rss), 1)
    after = [r for t, r in rep.rss_curve if t >= warmup * rep.seconds]
    rep.rss_after_warmup_mb = after[0] if after else rep.rss_end_mb
    _observe(telemetry_path, rep)
    if engine == "in-process":
        from . import vllm_adapter as va
        rep.records = va.engine_scheduler(llm).arbiter.records()
        rep.records["scheduler_requests"] = len(va.engine_scheduler(llm).requests)
    return rep


def _scheduler_state(llm: Any) -> Dict[str, Any]:
    """What the in-process scheduler holds when it stops making progress (diagnosis)."""
    from . import vllm_adapter as va
    s = va.engine_scheduler(llm)
    arb = s.arbiter
    head = [{"id": r.request_id, "tokens": r.num_tokens, "computed": r.num_computed_tokens,
             "status": str(r.status), "ledger": str(getattr(arb.requests.get(r.request_id),
                                                            "status", None))}
            for r in list(s.waiting)[:3]]
    refs = sum(1 for b in s.kv_cache_manager.block_pool.blocks if b.ref_cnt and not b.is_null)
    return {"free": arb.free_blocks(), "protected_resident": arb.protected_resident,
            "blocks_referenced": refs, "running": [r.request_id for r in s.running],
            "held": list(s._held), "waiting_head": head, "errors": list(s._errors),
            "pinned_by_object": {o.object_id: len(o.pinned) for o in arb.objects.values()
                                 if o.pinned},
            "blocking": list(arb.blocking_claims())}


def _observe(path: str, rep: LoadReport) -> None:
    """The oracle: the observer over the engine's own telemetry file."""
    from kvclaims.model.observer import read_jsonl, reconstruct

    events = read_jsonl(path, validate=False)
    rep.telemetry_events = len(events)
    rec = reconstruct(events)
    kinds: Dict[str, int] = {}
    for f in rec.findings:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    rep.observer_findings = len(rec.findings)
    rep.observer_verdict = rec.verdict
    rep.observer_kinds = kinds
    for e in events:
        t = e.get("type")
        if t == "claim_submitted":
            rep.claims_submitted += 1
        elif t == "claim_accepted":
            rep.claims_accepted += 1
        elif t == "claim_harmed":
            rep.claims_harmed += 1
        elif t == "victim" and e.get("protected"):
            rep.victims_protected += 1


# --- the stall reproduction ----------------------------------------------------------------------

STALL_CLAIM = {"claim_id": "cA", "object_id": "A", "protection_mode": "hard_protected",
               "predicate": {"kind": "leading_prefix_at_least", "k": 60},
               "footprint_blocks": 60}
DEEP_CLAIM = '{"claim_id": ' * 3000 + "1" + "}" * 3000      # past the size limit
NESTED_CLAIM = '{"a":' * 200 + "1" + "}" * 200                 # within it, past the depth limit


def stall_scenario(llm: Any, steps: int = 400) -> Dict[str, Dict[str, Any]]:
    """Issue 8's reproduction on an engine with pool 81 and cap 60; each request's final
    (finish reason, stop reason, steps taken until it finished)."""
    from vllm.inputs import TokensPrompt

    from . import vllm_adapter as va
    from .vllm_core import fresh_token_ids, object_token_ids

    eng = llm.llm_engine
    add = lambda rid, toks, extra=None: eng.add_request(  # noqa: E731
        rid, TokensPrompt(prompt_token_ids=toks), va.sampling_params(1, extra))
    add("A", object_token_ids("A", 60), {"kvclaims_tenant": "t1",
                                         "kvclaims_claim": json.dumps(STALL_CLAIM)})
    add("B", fresh_token_ids("B", 70))
    done: Dict[str, Dict[str, Any]] = {}

    def run_until(want, limit, after_step=None):
        for n in range(limit):
            for out in eng.step():
                if out.finished:
                    o = out.outputs[0]
                    done[out.request_id] = {"finish_reason": str(o.finish_reason),
                                            "stop_reason": o.stop_reason, "step": n}
            if after_step is not None:
                after_step()
            if want <= set(done):
                return

    def add_c_after_a():
        if "A" in done and not added:
            add("C", fresh_token_ids("C", 1))
            added.append("C")

    added: List[str] = []
    run_until({"A", "B", "C"}, steps, add_c_after_a)
    add("D", fresh_token_ids("D", 2), {"kvclaims_tenant": "t1", "kvclaims_claim": DEEP_CLAIM})
    add("D2", fresh_token_ids("D2", 2), {"kvclaims_tenant": "t1",
                                         "kvclaims_claim": NESTED_CLAIM})
    add("E", fresh_token_ids("E", 2))
    run_until({"D", "D2", "E"}, 50)
    return done


# --- command line --------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    # kvclaims.options.Parser: a usage error is one line on stderr, exit 2
    p = Parser(prog="kvclaims load", description=(
        "Drive the patched vLLM engine like a server (several tenants, random claims, "
        "releases, reuse, oversized prompts, malformed claims) with the observer as oracle."))
    p.add_argument("--engine", choices=ENGINES, default="in-process",
                   help="in-process engine, or the multi-process engine `vllm serve` runs")
    p.add_argument("--policy", choices=POLICIES, default="hard_refuse",
                   help="the arbiter's policy (conformant policies only)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="stop submitting after this many seconds (default 60)")
    p.add_argument("--requests", type=int, default=100_000,
                   help="stop submitting after this many requests (default 100000)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--tenants", type=int, default=3, help="number of tenants (default 3)")
    p.add_argument("--pool", type=int, default=81,
                   help="pool blocks including vLLM's null block (default 81)")
    p.add_argument("--cap", type=int, default=60,
                   help="protected cap in blocks (default 60)")
    p.add_argument("--telemetry", help="write the engine's telemetry here (default: temp)")
    p.add_argument("--scenario", choices=("random", "stall"), default="random",
                   help="random load, or issue 8's stall reproduction")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE")
    return p


def main(argv: List[str]) -> int:
    args = _parser().parse_args(argv)
    if not (0 < args.seconds <= 24 * 3600):
        raise UsageError("--seconds must be in (0, 86400]")
    if not (0 < args.requests <= 10 ** 7) or not (1 <= args.tenants <= 1000):
        raise UsageError("--requests must be in [1, 10^7] and --tenants in [1, 1000]")
    if not (3 <= args.pool <= 100_000) or not (0 <= args.cap < args.pool - 1):
        raise UsageError("--pool must be in [3, 100000] and --cap in [0, pool - 2]")
    for path in (args.json, args.telemetry):
        if path and (os.path.isdir(path) or not os.access(
                os.path.dirname(os.path.abspath(path)) or ".", os.W_OK)):
            raise UsageError(f"cannot write {path}")
    if args.scenario == "stall":
        tel = args.telemetry or os.path.join(tempfile.mkdtemp(prefix="kvclaims-stall-"),
                                             "telemetry.jsonl")
        llm = build_engine(args.engine, args.policy, 81, 60, tel)
        result: Dict[str, Any] = {"engine": args.engine, "policy": args.policy,
                                  "requests": stall_scenario(llm)}
    else:
        rep = run_load(args.engine, args.policy, seconds=args.seconds,
                       max_requests=args.requests, seed=args.seed, tenants=args.tenants,
                       pool=args.pool, cap=args.cap, telemetry_path=args.telemetry)
        result = rep.to_json()
        print(f"kvclaims load: {rep.engine} {rep.policy}: {rep.submitted} submitted, "
              f"{rep.terminal} terminal, {rep.refusals} refusals "
              f"({rep.refusals_naming_no_claim} naming no claim), "
              f"{rep.observer_findings} observer findings, {rep.stalls} stalls, "
              f"peak RSS {rep.peak_rss_mb} MB (after warm-up {rep.rss_after_warmup_mb}, "
              f"end {rep.rss_end_mb}), {rep.steps} steps in {rep.seconds} s")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
    else:
        json.dump(result if args.scenario == "stall" else {}, sys.stdout)
        print()
    if args.scenario == "stall":
        return 0
    bad = (rep.unfinished or rep.stalls or rep.observer_findings
           or rep.refusals_naming_no_claim)
    return 12 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
