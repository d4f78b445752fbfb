"""Evidence: curated citations and machine evidence anchors, and the evidence files this
project produces for its own targets.

A machine evidence anchor names a result file made by this project (litmus runs recorded by
`kvclaims conform --record TARGET`) and the sha256 the descriptor's author saw.  Every run of
the checker re-reads the file and re-derives what it evidences; a file that is missing, whose
digest differs, that was made on another runtime version or target, or whose cases did not
pass, evidences nothing (the row falls to unknown).  Nothing is taken from the descriptor's
word except which file to read."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kvclaims.spec.policy import CONFORMANT

from .bundles import witnesses

SCHEMA = "kvclaims.evidence/1"
CONFORM_LITMUS_DIR = Path(__file__).with_name("litmus")
# version strings that name no version: a citation carrying one cannot be matched
NO_VERSION = ("", "unknown", "unversioned", "latest")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- recording evidence for our own targets ---------------------------------------------------

def runtime_of(target: str) -> Tuple[str, str]:
    """(runtime, version) a target runs: vLLM's own version for the vLLM targets, this
    package's for the spec and the MicroRuntime."""
    if target.startswith("vllm"):
        vllm = sys.modules.get("vllm")
        if vllm is None:
            import vllm  # noqa: F401  (the target already needed it)
            vllm = sys.modules["vllm"]
        return "vllm", str(vllm.__version__)
    return "kvclaims-" + target, importlib.metadata.version("kvclaims")


def record(target: str, out: Path, policies: Sequence[str] = CONFORMANT) -> Dict[str, Any]:
    """Run the litmus suite and the conformance scenarios on `target` under `policies` and
    write the evidence file.  Conformant-policy cases evidence obligations; cases of a bad
    policy that pass show the runtime breaking the obligations the spec saw broken (stock
    runtimes are recorded that way, e.g. vllm-core under `native`)."""
    from kvclaims.checker.litmus import LITMUS_DIR, load_suite, run_suite
    from kvclaims.spec.vocab import Mode
    suite = load_suite(LITMUS_DIR) + load_suite(CONFORM_LITMUS_DIR)
    results = run_suite(suite, target, policies=list(policies))
    modes = {(sc.id, v): Mode(cfg.claims[0].mode).name.lower() if cfg.K else None
             for sc in suite for v, cfg in sc.variants.items()}
    runtime, version = runtime_of(target)
    pol = "".join(f" --policy {p}" for p in policies if tuple(policies) != tuple(CONFORMANT))
    doc = {"schema": SCHEMA, "kind": "litmus", "target": target, "runtime": runtime,
           "runtime_version": version, "kvclaims_version": importlib.metadata.version("kvclaims"),
           # how to make it again (the output path is the caller's business)
           "command": f"kvclaims conform --record {target}{pol} --out FILE",
           # the protection mode of the case's claim: which row a violation is about
           "results": [dict(r.to_json(), claim_mode=modes[(r.litmus, r.variant)])
                       for r in results]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


# --- checking evidence ------------------------------------------------------------------------

@dataclass
class AnchorCheck:
    """What one anchor evidences now, or why it evidences nothing."""
    file: str
    ok: bool
    rule: str = ""                       # why not, as a rule name
    detail: str = ""
    digest: str = ""
    target: str = ""
    runtime_version: str = ""
    cases: Dict[str, bool] = field(default_factory=dict)   # litmus id -> every run passed
    broken: Dict[str, List[str]] = field(default_factory=dict)
    # mode -> obligations a passing bad-policy case showed broken on this runtime
    violations: Dict[str, set] = field(default_factory=dict)

    def evidences(self, mode: str, ob: str) -> bool:
        """A case that witnesses `ob` for `mode` passed under a conformant policy, and no
        run of it saw the spec break `ob`."""
        return self.ok and any(self.cases.get(c) and ob not in self.broken.get(c, ())
                               for c in witnesses(mode, ob))


def check_anchor(anchor: Dict[str, Any], base: Path, version: str,
                 targets: Sequence[str]) -> AnchorCheck:
    rel = anchor["file"]
    path = (base / rel).resolve()
    chk = AnchorCheck(file=rel, ok=False)
    if not path.is_file():
        chk.rule, chk.detail = "evidence-missing", f"{rel}: no such file"
        return chk
    chk.digest = sha256_file(path)
    if chk.digest != anchor["sha256"]:
        chk.rule = "evidence-digest-mismatch"
        chk.detail = f"{rel}: sha256 {chk.digest[:12]}... is not the anchored {anchor['sha256'][:12]}..."
        return chk
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        chk.rule, chk.detail = "evidence-unreadable", f"{rel}: {e}"
        return chk
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or \
            not isinstance(doc.get("results"), list):
        chk.rule, chk.detail = "evidence-unreadable", f"{rel}: not a {SCHEMA} file"
        return chk
    chk.target, chk.runtime_version = str(doc.get("target")), str(doc.get("runtime_version"))
    if chk.target not in targets:
        chk.rule = "evidence-target-mismatch"
        chk.detail = f"{rel}: made on target {chk.target}, the descriptor's are {list(targets)}"
        return chk
    if chk.runtime_version != version:
        chk.rule = "evidence-version-mismatch"
        chk.detail = f"{rel}: made on version {chk.runtime_version}, descriptor says {version}"
        return chk
    for r in doc["results"]:
        if not isinstance(r, dict):
            continue
        cid = str(r.get("litmus"))
        obs = r.get("observed") if isinstance(r.get("observed"), dict) else {}
        broken = obs.get("broken_obligations")
        if r.get("policy") not in CONFORMANT:
            if r.get("passed") is True and isinstance(broken, list):
                chk.violations.setdefault(str(r.get("claim_mode")), set()).update(broken)
            continue
        # a result whose shape is off, or that did not observe which obligations the spec saw
        # broken, passes nothing (fail closed), and does not crash the checker
        ok = r.get("passed") is True and isinstance(broken, list)
        chk.cases[cid] = chk.cases.get(cid, True) and ok
        chk.broken.setdefault(cid, []).extend(broken if isinstance(broken, list) else [])
    chk.ok = True
    return chk


def citation_problem(c: Dict[str, Any], version: str) -> Optional[Tuple[str, str]]:
    """(rule, detail) when a citation cannot count for a descriptor of `version`."""
    cv = str(c.get("version", "")).strip()
    if cv.lower() in NO_VERSION or version.lower() in NO_VERSION:
        return "citation-unversioned", f"{c['url']}: no runtime version to match"
    if cv != version:
        return "citation-version-mismatch", f"{c['url']}: cites version {cv}, descriptor says {version}"
    return None
