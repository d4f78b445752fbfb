"""The conformance report page in a real headless browser (Debian's Chromium): the DOM the
browser built holds every matrix cell with its class, and the screenshot shows them painted."""
import os
import re
import shutil
import subprocess

import pytest

from kvclaims.checker.conform.cli import DESCRIPTOR_DIR, run
from kvclaims.checker.conform.report import COLOURS, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (make test installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = tmp_path_factory.mktemp("report")
    rows = run(sorted(DESCRIPTOR_DIR.glob("*.toml")))
    html = out / "conform.html"
    write_html(rows, html)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1400,900", "--user-data-dir=" + str(out / "profile")]
    dom = subprocess.run(flags + ["--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    shot = out / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", html.as_uri()], capture_output=True,
                   timeout=120, check=True)
    return rows, dom, shot


def test_browser_dom_has_every_matrix_cell(page):
    rows, dom, _ = page
    cells = re.findall(r"<td class=\"cell\"[^>]*data-runtime=\"([^\"]+)\" data-mode=\"([^\"]+)\""
                       r" data-class=\"([^\"]+)\"[^>]*>([a-z_]+)", dom)
    assert {(rt, m): c for rt, m, c, _ in cells} == {(r.runtime, r.mode): r.cls for r in rows}
    assert all(c == text for _, _, c, text in cells)     # the cell says its class
    assert "vllm-patched" in dom and "native_conformance" in dom


def test_screenshot_paints_the_matrix_cells(page):
    from PIL import Image
    rows, _, shot = page
    img = Image.open(shot).convert("RGB")
    # the matrix is the first thing on the page: count each class colour in its band
    top = img.crop((0, 0, img.width, 330))
    counts = {c: n for n, c in top.getcolors(top.width * top.height)}
    rgb = lambda h: tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))
    for cls, colour in COLOURS.items():
        n_cells = sum(r.cls == cls for r in rows)
        painted = counts.get(rgb(colour), 0)
        if n_cells:     # a matrix cell is at least ~100 x 20 pixels of its class colour
            assert painted >= 1500 * n_cells, (cls, painted, n_cells)
        else:           # only the legend's swatch
            assert painted < 1500, (cls, painted)
