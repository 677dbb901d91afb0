"""The audit's HTML page in a real headless Chromium: it renders without a console message,
its script runs, the numbers it shows are the JSON report's, and a filter and a sort given
in the link work. Chromium's console goes to stderr (--enable-logging=stderr); the DOM is
read after the scripts ran (--dump-dom)."""

from __future__ import annotations

import html as htmllib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from auditkit import Filled
from needs import missing
from test_core import run

from leakscan.audit.report import audit_dict
from leakscan.report.html import render_html

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def chromium(page: Path, tmp: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The DOM after the scripts ran, and every console line."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing("chromium is missing (bash .ci/setup installs it)")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    proc = subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri() + fragment],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def count(dom: str, key: str) -> int:
    found = re.search(rf'id="count-{key}" data-count="(\d+)">(\d+)<', dom)
    assert found, key
    assert found.group(1) == found.group(2)
    return int(found.group(1))


def visible_rows(dom: str) -> list[str]:
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        row
        for row in re.findall(r"<tr [^>]*>.*?</tr>", body, re.S)
        if "hidden" not in row.split(">", 1)[0]
    ]


def test_console_errors_are_seen(tmp_path: Path) -> None:
    """The check below can fail: a page with a script error shows it on the console."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, console = chromium(page, tmp_path)
    assert any("undefinedFunction" in line for line in console)


@pytest.fixture(scope="module")
def page(filled: Filled, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("html")
    report = run(filled.registry.host, tmp / "a.db")
    path = tmp / "audit.html"
    path.write_text(render_html(report))
    return path, audit_dict(report)


def test_renders_and_numbers_match_the_json(page: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    path, data = page
    dom, console = chromium(path, tmp_path)
    assert console == []
    assert 'data-ready="1"' in dom  # the script ran to its end
    stats = data["stats"]
    for key in ("repositories", "images", "layers_total", "layers_unique", "layers_scanned"):
        assert count(dom, key.replace("_", "-")) == stats[key]
    findings = [(i, f) for i in data["images"] for f in i["findings"]]
    assert count(dom, "findings") == len(findings) == len(visible_rows(dom)) == 5
    assert count(dom, "images-leaking") == sum(1 for i in data["images"] if i["findings"])
    # each row is one finding of the JSON: repository, tag, status, masked secret, first seen
    rows = {}
    for r in visible_rows(dom):
        key = re.search(r'data-fingerprint="(\w+)".*<td class="tag">([^<]*)<', r)
        assert key
        rows[key.groups()] = r
    for image, f in findings:
        row = htmllib.unescape(rows[(f["fingerprint"], image["tag"])])
        status = f["location"].get("status", f["location"]["kind"])
        for value in (image["repository"], image["tag"], status, f["redacted"], f["first_seen"]):
            assert f">{value}<" in row, (value, row)


def test_filter_and_sort_from_the_link(page: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    path, data = page
    dom, console = chromium(path, tmp_path, "#filter=api&sort=tag")
    assert console == []
    rows = visible_rows(dom)
    assert [re.search(r'<td class="tag">(\w+)<', r).group(1) for r in rows] == ["2", "3"]  # type: ignore[union-attr]
    assert re.search(r'id="shown">2<', dom)
    dom, _ = chromium(path, tmp_path, "#status=deleted")
    assert len(visible_rows(dom)) == 1 and ">deleted<" in visible_rows(dom)[0]


def test_strings_from_images_are_escaped() -> None:
    from leakscan.audit.core import AuditReport, AuditStats

    stats = AuditStats(1, 0, 0, 0, 0, 0, 0, 0.0)
    nasty = AuditReport("<script>alert(1)</script>", (), (), stats, 1, 0.0)
    text = render_html(nasty)
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
