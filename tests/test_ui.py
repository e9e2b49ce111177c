"""UI: pure render/upload functions, then the real app driven in headless Chromium and via gradio_client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.service import check_upload_content, sanitize_filename
from ui.render import answer_markdown, sources_html

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_answer_markdown_links_and_escapes(make_answer):
    md = answer_markdown(make_answer(text="Agencies <img src=x onerror=alert(1)> must act [1]. Bogus [7]."))
    assert '<a href="#src-0-1" class="cite" data-cite="0:1" title="open source [1]">[1]</a>' in md
    assert "<img" not in md and "&lt;img" in md
    assert "[7]" not in md  # a marker with no citation is not shown as one


def test_sources_html_escapes_and_highlights(make_answer):
    h = sources_html(make_answer())
    assert 'id="src-0-1"' in h and 'data-source="dir/plan.pdf"' in h and 'data-page="7"' in h
    assert "<script>" not in h and "&lt;script&gt;" in h and "<b>AI</b>" not in h
    assert "<mark>Agencies must act quickly</mark>" in h and "&amp; well." in h
    assert "p. 7" in h and "2025-07-23" in h and "support 0.81" in h


@pytest.mark.parametrize(
    "name,expected",
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("/abs/path/Memo Final.DOCX", "Memo Final.docx"),
        ("C:\\Users\\x\\evil.md", "evil.md"),
        ("bad\x00name\x1b[31m.html", "badname_31m.html"),
        ("..hidden...md", "hidden.md"),
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


@pytest.mark.parametrize("name", ["script.exe", "noext", "....", "archive.zip", "/"])
def test_sanitize_filename_rejects(name):
    with pytest.raises(ConfigError):
        sanitize_filename(name)


def test_upload_content_checks(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"MZ\x90\x00 binary")
    with pytest.raises(ConfigError, match="not a PDF"):
        check_upload_content(p, "x.pdf", 10_000)
    with pytest.raises(ConfigError, match="binary"):
        check_upload_content(p, "x.txt", 10_000)
    p.write_bytes(b"%PDF-1.4 " + b"x" * 20_000)
    with pytest.raises(ConfigError, match="over the limit"):
        check_upload_content(p, "x.pdf", 10_000)
    p.write_text("# fine\n\nplain text")
    check_upload_content(p, "notes.md", 10_000)


# -- the real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(free_port, tmp_path_factory):
    from helpers import write_fixture_corpus

    base = tmp_path_factory.mktemp("ui")
    corpus = write_fixture_corpus(base / "corpus")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CONFIG": str(base / "none.toml"), "HF_HUB_OFFLINE": "1"}
    log = open(base / "serve.log", "w")  # noqa: SIM115 - stays open for the server's lifetime
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--corpus", str(corpus), "--index", str(base / "index"),
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((base / "serve.log").read_text()[-3000:])
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        raise RuntimeError("server did not start: " + (base / "serve.log").read_text()[-3000:])
    yield url, corpus
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_gradio_client_api(server):
    from gradio_client import Client

    url, _ = server
    res = Client(url, verbose=False).predict("What must drone operators keep and for how long?", 3, "extractive", "", api_name="/ask")
    assert not res["refused"] and res["citations"]
    assert res["citations"][0]["source"] == "reports/farm-guidance.docx" and "[1]" in res["answer"]
    off = Client(url, verbose=False).predict("What is the recipe for sourdough bread?", 3, "auto", "", api_name="/ask")
    assert off["refused"]


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian chromium not installed (.ci/run installs it)")
@pytest.mark.browser
def test_browser_chat_citations_and_upload(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, corpus = server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#question textarea").fill("What certificate must drone operators hold?")
        page.locator("#ask").click()
        # streamed answer: wait for the final message with a citation link
        cite = page.locator("#chatbot a.cite").first
        expect(cite).to_be_visible(timeout=240_000)
        entry = page.locator("#sources .src.cited").first
        expect(entry).to_be_visible()
        assert entry.get_attribute("data-source") == "reports/farm-guidance.docx"
        assert entry.get_attribute("data-page") == "1"
        assert "remote pilot certificate" in entry.inner_text()
        page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)

        # upload a new document, then ask about it
        page.get_by_role("tab", name="Documents").click()
        new = tmp_path / "lighthouse-memo.md"
        new.write_text("# Lighthouse Memo\n\nThe lighthouse keeper program restores coastal beacons in Maine by 2027.\n")
        page.locator("#upload input[type=file]").set_input_files(str(new))
        page.wait_for_timeout(1500)
        page.locator("#add-docs").click()
        expect(page.locator("#doc-status")).to_contain_text("Added 1 file", timeout=180_000)
        expect(page.locator("#docs-table")).to_contain_text("uploads/lighthouse-memo.md")
        page.screenshot(path=str(ARTIFACTS / "ui-documents.png"), full_page=True)
        assert (corpus / "uploads/lighthouse-memo.md").exists()

        page.get_by_role("tab", name="Chat").click()
        page.locator("#question textarea").fill("Which program restores coastal beacons in Maine?")
        page.locator("#ask").click()
        expect(page.locator("#sources .src.cited[data-source='uploads/lighthouse-memo.md']").first).to_be_visible(timeout=240_000)
        page.screenshot(path=str(ARTIFACTS / "ui-upload-answer.png"), full_page=True)
        browser.close()


# -- the served UI's exposure ---------------------------------------------------------------------


@pytest.mark.slow
def test_served_ui_binds_loopback_only(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outward interface
            ip = s.getsockname()[0]
        except OSError:
            ip = "127.0.0.1"
    if ip.startswith("127."):
        pytest.skip("this machine has no non-loopback address to try")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(3)
        s.connect((ip, port))


@pytest.mark.slow
@pytest.mark.parametrize("path", ["index/CURRENT", "corpus/reports/farm-guidance.docx", "../../../../etc/passwd",
                                  "/etc/passwd", "rag.toml", "pyproject.toml"])
def test_server_does_not_hand_out_files(server, path):
    """Gradio's file route serves only its own temp uploads: not the index, corpus, config or system files."""
    import urllib.error

    url, corpus = server
    base = corpus.parent
    for target in (path, str(base / path)):
        for route in ("/gradio_api/file=", "/file="):
            try:
                with urllib.request.urlopen(url + route + urllib.request.quote(target), timeout=10) as r:
                    body = r.read()
                assert r.status >= 400 or not body or b"<html" in body[:200].lower(), f"{route}{target} was served"
            except urllib.error.HTTPError as e:
                assert e.code in (403, 404, 405), f"{route}{target}: {e.code}"


def test_exposure_warning():
    from rag.service import exposure_warning
    from rag.settings import Settings

    assert Settings().ui.host == "127.0.0.1"
    assert exposure_warning("127.0.0.1", False) is None and exposure_warning("localhost", False) is None
    assert "without a password" in exposure_warning("0.0.0.0", False)
    assert exposure_warning("0.0.0.0", True) is None
    assert "share link" in exposure_warning("127.0.0.1", False, share=True)


def test_cli_serve_warns_loudly_when_exposed(tmp_path):
    """The warning is printed before anything loads (a bad index path stops the server right after)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CONFIG": str(tmp_path / "none.toml"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "rag.cli", "serve", "--host", "0.0.0.0", "--corpus", str(tmp_path / "nothing"),
                        "--index", str(tmp_path / "none")], env=env, capture_output=True, text=True, timeout=300)
    assert "WARNING" in p.stderr and "without a password" in p.stderr
