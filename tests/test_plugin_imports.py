"""The vLLM plugin must not import the MicroRuntime (issue 8): its claim logic is the shared
ledger's. Checked statically over the project's own imports, transitively."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"kvclaims.spec": "spec", "kvclaims.model": "model", "kvclaims.checker": "checker",
           "kvclaims.refinement": "refinement", "kvclaims": "kvclaims"}


def _file(module: str):
    for pkg, folder in sorted(FOLDERS.items(), key=lambda kv: -len(kv[0])):
        if module == pkg or module.startswith(pkg + "."):
            rest = module[len(pkg):].lstrip(".").replace(".", "/")
            base = ROOT / folder / rest if rest else ROOT / folder
            for cand in (base.with_suffix(".py"), base / "__init__.py"):
                if cand.exists():
                    return cand
    return None


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def closure(module: str):
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        f = _file(m)
        if m in seen or f is None:
            continue
        seen.add(m)
        todo.extend(i for i in _imports(f, m) if i.startswith("kvclaims"))
    return seen


def test_the_plugin_does_not_import_the_microruntime():
    mods = closure("kvclaims.refinement.vllm_plugin")
    assert "kvclaims.model.ledger" in mods and "kvclaims.refinement.vllm_arbiter" in mods
    assert "kvclaims.model.runtime" not in mods, sorted(mods)
