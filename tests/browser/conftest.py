"""Real-browser fixtures: a JupyterLab server, headless Debian chromium, notebooks.

- ``lab``: one JupyterLab for these tests (local ipykernel kernels that can import
  binder_autorun; ``BINDER_AUTORUN_TOKEN`` = the remote server's token).
- ``browser``: one chromium for these tests, one context; ``page``: a page per test.
Package-scoped, not session-scoped: playwright's sync API keeps an event loop
running in the main thread while it lives, and later tests call ``asyncio.run``.
- ``open_notebook(cells)``: writes a notebook and opens it (a page object).
- ``remote``: the remote server, with the kernels a test started shut down after it.
On a failed test a screenshot and the page's console log go to a tmp dir; the
report prints the path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright

from binder_autorun.launch import LocalServer

from .lab import LabServer
from .notebook import Notebook

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT = 30.0  # seconds, for every single wait

CONSOLE_KEY = pytest.StashKey[list[str]]()
PAGE_KEY = pytest.StashKey[Page]()
ARTEFACTS_KEY = pytest.StashKey[Callable[[str], Path]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in tests/browser is a browser test."""
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def lab_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab, spawned but not waited for: it starts while the remote server and
    chromium do (see ``lab``)."""
    home = tmp_path_factory.mktemp("lab")
    server = LabServer(home, env={"BINDER_AUTORUN_STATE": str(home / "binder-autorun-state.json")})
    server.spawn()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def lab(lab_process: LabServer, remote_server: LocalServer, browser: Browser) -> LabServer:
    """A JupyterLab server on 127.0.0.1 for the whole session, ready; its kernels have
    ``BINDER_AUTORUN_TOKEN`` = the remote server's token."""
    lab_process.set_kernel_env({"BINDER_AUTORUN_TOKEN": remote_server.token})
    lab_process.wait_ready()
    return lab_process


@pytest.fixture(scope="package", autouse=True)
def _chromium_installed() -> None:
    """A newcomer without Debian's chromium gets a skip naming the package; CI (CI=true) must have it."""
    if Path(CHROMIUM).exists():
        return
    reason = f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    """The playwright driver."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless (no browser download needed)."""
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One browser context for the session (its HTTP cache spares later pages the
    download of JupyterLab's bundles); each test gets a page of its own."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT * 1000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A page whose console log (and page errors) is kept for failure reports."""
    page = context.new_page()
    console: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        console.append(f"[{message.type}] {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    request.node.stash[CONSOLE_KEY] = console
    request.node.stash[PAGE_KEY] = page
    request.node.stash[ARTEFACTS_KEY] = tmp_path_factory.mktemp
    yield page
    if not page.is_closed():
        page.close()


@pytest.fixture
def open_notebook(lab: LabServer, page: Page, request: pytest.FixtureRequest) -> Iterator[Callable[[list[str]], Notebook]]:
    """Open a new notebook with the given code cells; its kernel is shut down afterwards."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:80]
    opened: list[Notebook] = []

    def open_(cells: list[str]) -> Notebook:
        notebook = Notebook.create(page, lab, f"{name}_{len(opened)}", cells, timeout=TIMEOUT)
        opened.append(notebook)
        return notebook

    yield open_
    page.close()  # the kernel websocket first, then the kernels
    lab.shutdown_kernels()


@pytest.fixture
def remote(remote_server: LocalServer) -> Iterator[LocalServer]:
    """The remote server; the kernels a test starts on it are shut down after it."""
    headers = {"Authorization": f"token {remote_server.token}"}

    def kernel_ids() -> set[str]:
        return {kernel["id"] for kernel in requests.get(remote_server.url + "api/kernels", headers=headers, timeout=30).json()}

    def delete(kernel_id: str) -> None:
        requests.delete(remote_server.url + f"api/kernels/{kernel_id}", headers=headers, timeout=30)

    before = kernel_ids()
    yield remote_server
    with ThreadPoolExecutor() as pool:  # each shutdown waits for its kernel: side by side
        list(pool.map(delete, kernel_ids() - before))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure (or an xfail) save a screenshot and the console log; print where."""
    report = yield
    if call.when == "call" and call.excinfo is not None and PAGE_KEY in item.stash:
        page = item.stash[PAGE_KEY]
        directory = item.stash[ARTEFACTS_KEY]("browser-failure-" + re.sub(r"\W+", "_", item.name)[:60])
        lines = [f"browser artefacts: {directory}"]
        try:
            page.screenshot(path=str(directory / "screenshot.png"), full_page=True, timeout=10_000)
            lines.append(f"  screenshot: {directory / 'screenshot.png'}")
        except Exception as error:  # a closed page must not hide the real failure
            lines.append(f"  no screenshot: {error}")
        (directory / "console.log").write_text("\n".join(item.stash.get(CONSOLE_KEY, [])) + "\n")
        lines.append(f"  console log: {directory / 'console.log'}")
        report.sections.append(("browser artefacts", "\n".join(lines)))
        if not hasattr(report, "wasxfail"):
            print("\n" + "\n".join(lines))
    return report
