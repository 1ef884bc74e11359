"""A real browser: JupyterLab runs the glossary quiz widget, the Temporal Web UI shows a workflow,
and the course site (Sphinx) is read, navigated and searched offline.

Headless Chromium is driven by Playwright (the Python package only: it uses the system
Chromium, and never downloads a browser). Where either is missing, the tests skip and say
how to install them:

    apt-get install -y chromium chromium-driver     # Debian/Ubuntu; the browser
    python -m pip install playwright                # the driver library (no `playwright install`)
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from sagakit import running_worker
from sagakit.course.client import web_ui_url
from sagakit.course.lessons.welcome import Greeting, WelcomeWorkflow, compose_greeting
from sagakit.course.quiz import QuizOptions, make_quiz
from tests.helpers import ROOT, free_port
from tests.test_lab import _lab_command
from tests.test_site import built_site

pytestmark = pytest.mark.slow

INSTALL = (
    "install a headless browser with `apt-get install -y chromium chromium-driver` and the "
    "driver library with `python -m pip install playwright` (never `playwright install`)"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 60_000


def _chromium() -> str:
    for candidate in (
        os.environ.get("SAGAKIT_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip(f"No Chromium found: {INSTALL}.")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the module; each test gets its own page (the ``page`` fixture)."""
    executable = _chromium()
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason=f"Playwright is not installed: {INSTALL}."
    )
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A page in a browser context of its own, closed when the test ends.

    A page left open keeps running its app (JupyterLab reconnecting to a server that has
    stopped, the Web UI polling) while the module's next tests run.
    """
    context = await browser.new_context()
    try:
        opened = await context.new_page()
        opened.set_default_timeout(TIMEOUT_MS)
        yield opened
    finally:
        await context.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on the notebooks, started with `make lab`'s command line and a token."""
    port = free_port()
    token = secrets.token_hex(16)
    command = [*_lab_command(port), "--LabApp.expose_app_in_browser=True"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={
            **os.environ,
            "JUPYTER_TOKEN": token,
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/api/status?token={token}", process)
        yield f"{base}/lab/tree/99-glossary.ipynb?reset&token={token}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(120):
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, "JupyterLab exited early"
            time.sleep(0.5)
    pytest.fail("JupyterLab did not answer within 60 s")


async def test_quiz_widget_runs_and_grades_a_click(lab: str, page: Any) -> None:
    first = make_quiz(QuizOptions(questions=5, choices=4, seed=1701))[0]
    await page.goto(lab)
    await page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget")
    # Wait for the kernel, then run every cell, as Run > Run All Cells does.
    await page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel?.status === 'idle'"
    )
    await page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    choice = page.locator("button.widget-button", has_text=first.answer)
    await choice.click()
    feedback = page.get_by_text("Score: 1 of 1")
    await feedback.wait_for()
    text = await feedback.inner_text()
    assert text.startswith(f"✓ Right: that is {first.answer}.")
    assert await choice.is_disabled()
    await page.get_by_role("button", name="Next question").click()
    await page.get_by_text("Question 2 of 5").wait_for()


async def test_web_ui_shows_a_workflow_we_started(
    page: Any, client: Client, task_queue: str
) -> None:
    workflow_id = f"browser-smoke-{secrets.token_hex(4)}"
    async with running_worker(
        client, task_queue=task_queue, workflows=[WelcomeWorkflow], activities=[compose_greeting]
    ):
        handle = await client.start_workflow(
            WelcomeWorkflow.run,
            Greeting(name="browser"),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
        await handle.result()
    await page.goto(web_ui_url(workflow_id, handle.result_run_id))
    await page.get_by_text(workflow_id).first.wait_for()
    await page.get_by_text("Completed").first.wait_for()
    # The list of workflows finds it too.
    await page.goto(web_ui_url(workflow_id).split("/workflows/")[0] + "/workflows")
    await page.get_by_role("link", name=workflow_id).first.wait_for()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    """Serves the site's files; says nothing, and ignores a browser that stops reading."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _SiteServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the browser moved on before a file was sent whole


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The course site (`make site`'s build) served from 127.0.0.1, as a static host would."""
    out, _broken = built_site(tmp_path_factory)
    server = _SiteServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_course_site_sidebar_timeline_and_search(page: Any, site_url: str) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(f"{site_url}index.html")
    # The sidebar leads to the sagas lesson.
    sidebar = page.locator("nav.bd-docs-nav")
    # (The Solutions section lists the solved edition under the same title: take the lesson's.)
    lesson = sidebar.locator('a[href$="notebooks/09-sagas.html"]')
    await lesson.filter(has_text=re.compile(r"^09 · Sagas")).click()
    await page.wait_for_url("**/notebooks/09-sagas.html")
    # Its saved timeline plot (drawn by `show_run(happy)`) is there and loads.
    timeline = page.locator("div.cell", has_text="show_run(happy)").locator("div.cell_output img")
    await timeline.first.scroll_into_view_if_needed()
    assert await timeline.first.evaluate("img => img.complete && img.naturalWidth > 100")
    assert "timeline" in await page.locator("main").inner_text()
    # Full-text search from the static files finds "compensating action" and lands on a page.
    await page.locator("button.search-button__button").first.click()
    box = page.locator("form.bd-search input[type=search]").first
    await box.fill("compensating action")
    await box.press("Enter")
    await page.wait_for_url("**/search.html?q=*")
    result = page.locator("#search-results ul.search li a").first
    await result.wait_for()
    await result.click()
    await page.wait_for_url(re.compile(r"/notebooks/.+\.html"))
    assert "compensating action" in (await page.locator("main").inner_text()).lower()
    # Not one request left the site: no CDN, no fonts, no analytics.
    assert requested
    assert [url for url in requested if not url.startswith(site_url)] == []
