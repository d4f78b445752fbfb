"""Tenants through a real OpenAI-compatible server (issue 9): vLLM's API server process on
127.0.0.1 (a free port) with ClaimScheduler and the identity middleware
(refinement/identity.py), the tiny generated model on the CPU, one server for the module,
bounded by timeouts and terminated in a finally. Tenants are API keys bound by the operator
(KVCLAIMS_TENANTS); one is bound through the gateway header.

vLLM answers a request that finished with an error by a bare HTTP 500; the reason is in the
server's log (one line per request, vllm_plugin.logger) and in the telemetry file, where
these tests count it. The server is started with ``python -m
vllm.entrypoints.openai.api_server`` (vLLM's own entry point behind ``vllm serve``): the
``vllm`` script of the CPU wheel looks up a distribution named ``vllm`` and fails."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

N = 200
SECRET = "operator-secret-for-tests"
KEYS = {f"key-t{i}": f"t{i}" for i in range(1, N + 3)}
GATEWAY = {"gw-t1": "t1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url, log, telemetry):
        self.url, self.log, self.telemetry = url, log, telemetry

    def post(self, body, key=None, headers=None):
        """(HTTP status, parsed body) of one completion."""
        req = urllib.request.Request(self.url + "/v1/completions",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
        if key:
            req.add_header("authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def many(self, calls):
        """Send (body, key[, headers]) calls concurrently: their answers, in order."""
        with ThreadPoolExecutor(16) as ex:
            return list(ex.map(lambda c: self.post(*c), calls))

    def mark(self):
        return os.path.getsize(self.log), os.path.getsize(self.telemetry)

    def since(self, mark):
        """(reasons logged by the plugin -> count, telemetry events) after ``mark``."""
        with open(self.log, encoding="utf-8", errors="replace") as f:
            f.seek(mark[0])
            reasons = {}
            for line in f:
                if " ends: kvclaims: " in line:
                    r = line.split(" ends: ", 1)[1].strip()
                    reasons[r] = reasons.get(r, 0) + 1
        with open(self.telemetry, encoding="utf-8") as f:
            f.seek(mark[1])
            events = [json.loads(x) for x in f if x.strip()]
        return reasons, events


@pytest.fixture(scope="module")
def server(tmp_path_factory, vllm_layer):
    from kvclaims.refinement.vllm_model import ensure_tiny_llama

    tmp = tmp_path_factory.mktemp("tenants")
    log, telemetry = tmp / "server.log", tmp / "claims.jsonl"
    telemetry.touch()
    port = free_port()
    env = dict(os.environ, KVCLAIMS_CPU_BLOCK_16="1", KVCLAIMS_IDENTITY_SECRET=SECRET,
               KVCLAIMS_TENANTS=json.dumps({**KEYS, **GATEWAY}),
               KVCLAIMS_TENANT_HEADER="x-kvclaims-tenant", VLLM_PLUGINS="kvclaims",
               HF_HUB_OFFLINE="1", VLLM_TARGET_DEVICE="cpu", OMP_NUM_THREADS="1",
               VLLM_CPU_OMP_THREADS_BIND="nobind")
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)    # the server's own engine process
    conf = {"kvclaims": {"policy": "hard_demote", "cap_blocks": 64, "keep_ended": 0,
                         "telemetry_path": str(telemetry), "limits": {"tenant_claims": 3}}}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(ensure_tiny_llama()), "--served-model-name", "tiny-llama",
           "--skip-tokenizer-init", "--block-size", "16", "--num-gpu-blocks-override", "81",
           "--max-model-len", "1280", "--enable-prefix-caching", "--dtype", "float32",
           "--enforce-eager", "--gpu-memory-utilization", "0.25",
           "--enable-prompt-tokens-details",
           "--scheduler-cls", "kvclaims.refinement.vllm_plugin.ClaimScheduler",
           "--middleware", "kvclaims.refinement.identity.TenantMiddleware",
           "--additional-config", json.dumps(conf),
           "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server not up in 300 s"
            time.sleep(1)
        yield Server(url, str(log), str(telemetry))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def tokens(name, blocks):
    from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids

    return object_token_ids(name, blocks) if name.isupper() else fresh_token_ids(name, blocks)


def body(prompt, salt=None, **xargs):
    out = {"model": "tiny-llama", "prompt": list(prompt), "max_tokens": 1, "temperature": 0,
           "ignore_eos": True}
    if salt is not None:
        out["cache_salt"] = salt
    if xargs:
        out["vllm_xargs"] = {k: json.dumps(v) if isinstance(v, dict) else v
                             for k, v in xargs.items()}
    return out


def claim(cid, obj, k, mode="hard_protected", **more):
    return {"claim_id": cid, "object_id": obj, "protection_mode": mode,
            "predicate": {"kind": "leading_prefix_at_least", "k": k}, **more}


def cached(answer):
    details = answer[1]["usage"].get("prompt_tokens_details") or {}
    return details.get("cached_tokens") or 0


def of_type(events, type_):
    return [e for e in events if e["type"] == type_]


def test_1_no_other_tenant_hits_a_claimed_prefix(server):
    m = server.mark()
    b = tokens("B", 4)
    st, _ = server.post(body(b, kvclaims_claim=claim("cB", "B", 4)), headers={
        "x-kvclaims-tenant": "gw-t1"})                       # bound through the gateway
    assert st == 200
    prompt = b + [7]
    guesses = [None, "t1", "kvclaims:2:t1", "kvclaims:2:t1:"] + [f"g{i}" for i in range(96)]
    calls = ([(body(prompt, g), "key-t2") for g in guesses]
             + [(body(prompt), f"key-t{i}") for i in range(3, 63)]
             + [(body(prompt, g), None) for g in guesses[:40]])
    assert len(calls) == N
    got = server.many(calls)
    assert [s for s, _ in got] == [200] * N and [cached(a) for a in got] == [0] * N
    assert cached(server.post(body(prompt), "key-t1")) == 64     # the owner's own request
    _, events = server.since(m)
    assert [(e["claim_id"], e["owner_scope"]) for e in of_type(events, "claim_materialized")
            ] == [("cB", "t1")]


def test_2_spoofed_tenants_are_refused_and_squat_nothing(server):
    m = server.mark()
    forged = {"kvclaims_identity": "t1:" + "0" * 64}
    calls = ([(body(tokens(f"s{i}", 1), kvclaims_tenant="t1", kvclaims_release="cB"),
               "key-t2") for i in range(100)]
             + [(body(tokens(f"f{i}", 1), kvclaims_release="cB", **forged), None)
                for i in range(50)]
             + [(body(tokens(f"q{i}", 1), kvclaims_claim=claim(f"x{i}", "X", 1), **forged),
                 None) for i in range(50)])
    got = server.many(calls)
    assert [s for s, _ in got] == [500] * N
    reasons, events = server.since(m)
    assert reasons == {
        "kvclaims: bad claim: kvclaims_tenant in the request is not trusted (identity = "
        "server): the tenant comes from the server's credentials": 100,
        # the middleware drops a client's attestation: the request is anonymous
        "kvclaims: bad claim: kvclaims_release: tenant '' may not release claim 'cB': "
        "only its owner may": 50,
        "kvclaims: bad claim: a claim needs a tenant: the server's credentials (identity = "
        "server) or kvclaims_tenant (identity = client)": 50}
    assert len(of_type(events, "release_denied")) == 50 and not of_type(events,
                                                                        "claim_released")
    assert not of_type(events, "claim_submitted")


def test_3_another_tenant_never_releases_a_claim(server):
    m = server.mark()
    got = server.many([(body(tokens(f"r{i}", 1), kvclaims_release="cB"), f"key-t{i + 2}")
                       for i in range(N)])
    assert [s for s, _ in got] == [500] * N
    reasons, events = server.since(m)
    assert sum(reasons.values()) == N and len(reasons) == N
    assert all(r.startswith("kvclaims: bad claim: kvclaims_release: tenant 't") and
               r.endswith(" may not release claim 'cB': only its owner may") for r in reasons)
    assert len(of_type(events, "release_denied")) == N and not of_type(events,
                                                                      "claim_released")


def test_4_another_tenants_requests_never_demote_a_hard_claim(server):
    m = server.mark()
    assert server.post(body(tokens("A", 60), kvclaims_claim=claim("cA", "A", 60)),
                       "key-t1")[0] == 200
    got = server.many([(body(tokens(f"d{i}", 30)), "key-t2") for i in range(N)])
    assert [s for s, _ in got] == [500] * N
    reasons, events = server.since(m)
    assert reasons == {"kvclaims: refused: blocking claims cB, cA (infeasible: protected 64 "
                       "+ 30 > usable 80)": N}
    assert not of_type(events, "claim_demoted") and len(of_type(events, "request_refused")) == N


def test_5_a_failed_claim_leaves_the_object_free_and_limits_name_themselves(server):
    m = server.mark()
    x = tokens("X", 1)
    bad = [server.post(body(x, kvclaims_claim=claim("s1", "X", 1, duration=-1)), "key-t2"),
           server.post(body(tokens("X", 2), kvclaims_claim=claim("s2", "X", 2)), "key-t2")]
    assert [s for s, _ in bad] == [500, 500]
    ok = [server.post(body(tokens(f"y{i}", 1) if i else x, kvclaims_claim=claim(
        f"c3{i}", f"Y{i}" if i else "X", 1, "best_effort")), "key-t3") for i in range(4)]
    assert [s for s, _ in ok] == [200, 200, 200, 500]
    reasons, events = server.since(m)
    assert reasons == {
        "kvclaims: bad claim: claim s1: duration must be > 0 when given": 1,
        "kvclaims: claim rejected: protected footprint would be 66 > cap 64": 1,
        "kvclaims: claim rejected: limit tenant_claims = 3 reached of tenant 't3' "
        "(would be 4)": 1}
    assert [(e["claim_id"], e["owner_scope"]) for e in of_type(events, "claim_accepted")] == [
        ("c30", "t3"), ("c31", "t3"), ("c32", "t3")]
    released = server.many([(body(tokens(f"z{i}", 1), kvclaims_release=f"c3{i}"), "key-t3")
                            for i in range(3)])
    assert [s for s, _ in released] == [200] * 3
    again = server.post(body(tokens("y9", 1), kvclaims_claim=claim(
        "c39", "Y9", 1, "best_effort")), "key-t3")
    assert again[0] == 200
