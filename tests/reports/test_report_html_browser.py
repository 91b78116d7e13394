"""The results page as a person sees it: opened from the file system by a headless Chromium, which
renders it (screenshot non-blank), runs its script without a console message, shows its tables, and
sorts and filters them. Skipped where no Chromium is installed (Debian: ``apt-get install chromium``)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from reports.html import html_page
from tests.reports.html_page_parser import parse_page
from tests.reports.test_report_html import store_records

CHROMIUM = next((p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on PATH (Debian package 'chromium')")

#: Appended after the page's own script: sorts the negative-transfer table by class accuracy (twice:
#: descending) and unticks no_coupling, then writes what it saw onto <html> for --dump-dom to show.
PROBE = """<script>
(function () {
  var root = document.documentElement, block = document.querySelector('[data-kind="negative-transfer"]');
  var th = block.querySelector('th[data-header="classes: accuracy"]');
  th.click(); th.click();
  var body = block.querySelector("tbody");
  root.setAttribute("data-probe-top", body.rows[0].cells[0].textContent + "|" + body.rows[0].cells[1].textContent);
  var box = document.querySelector('#method-filter input[value="no_coupling"]');
  box.checked = false; box.dispatchEvent(new Event("change"));
  var shown = Array.prototype.filter.call(document.querySelectorAll('[data-method="no_coupling"]'),
                                          function (el) { return el.offsetParent !== null; }).length;
  root.setAttribute("data-probe-no-coupling-shown", String(shown));
})();
</script>
"""


def chromium(tmp_path, *args: str) -> tuple[str, list[str]]:
    """Chromium's stdout and its console messages (``--enable-logging`` prints them as ``CONSOLE`` lines)."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    text = html_page(store_records(histories=False), source="browser test")
    (folder / "index.html").write_text(text, encoding="utf-8")
    return folder / "index.html", text


def test_the_page_renders_with_its_tables_and_no_console_message(page_file, tmp_path):
    path, text = page_file
    dom, console = chromium(tmp_path, "--dump-dom", path.as_uri())
    assert console == []
    head = dom[:dom.index("<head>")]
    assert 'data-ready="1"' in head and "data-js-errors" not in head  # the script ran to its end
    tables = sum("report" in t.classes.split() for t in parse_page(text).tables)
    assert f'data-tables-shown="{tables}"' in head and tables >= 10  # every results table has a height
    shot = tmp_path / "page.png"
    _, console = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", path.as_uri())
    assert console == []
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1280)
    assert float(np.std(pixels)) > 0.05  # not a blank page
    inked = (pixels.mean(axis=2) < 0.6).mean()  # text, rules and figure lines: dark pixels
    assert 0.005 < inked < 0.5


def test_sorting_and_the_method_filter_work_in_the_browser(page_file, tmp_path):
    path, text = page_file
    probed = path.with_name("probe.html")
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom, console = chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert console == []
    head = dom[:dom.index("<head>")]
    # highest class accuracy on toy: dmsca with relatedness=domain (0.67 on average)
    assert 'data-probe-top="dmsca|relatedness=domain"' in head
    assert 'data-probe-no-coupling-shown="0"' in head
