"""A real headless chromium, driven through chromedriver (selenium), inside a lab host.

Chromium, chromedriver and every connection between them and to the server
live in the host's network namespace: `NamespaceWorker` is one thread that
joined the namespace (a thread started by a thread in a namespace is in it
too), and every call of `Browser` runs on it, so each socket selenium opens
is made there. `LoopThread` is an asyncio loop on a thread of the namespace
(for a server and its clients). A test module that uses them marks itself
``needs_lab("chromium", "chromedriver")`` and skips without selenium.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pywg.lab import Host

T = TypeVar("T")
CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
CALL_TIMEOUT = 30.0
PAGE_TIMEOUT = 10.0


class NamespaceWorker:
    """One thread inside `host`'s namespace that runs what it is given, in order."""

    def __init__(self, host: Host) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"ns-{host.name}")
        # the worker thread starts at the first submit: made from a thread in the namespace
        host.call(lambda: self._executor.submit(lambda: None).result())

    def call(self, function: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
        return self._executor.submit(function).result(timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class LoopThread:
    """An asyncio event loop running on a thread inside `host`'s namespace."""

    def __init__(self, host: Host) -> None:
        self.loop = asyncio.new_event_loop()

        def start() -> threading.Thread:
            thread = threading.Thread(target=self.loop.run_forever, name="ns-loop", daemon=True)
            thread.start()
            return thread

        self._thread = host.call(start)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Start `coro` on the loop; its concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self.loop.close()


class Browser:
    """Headless chromium in a namespace; its calls run on a `NamespaceWorker`."""

    def __init__(self, host: Host, base_url: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.base_url = base_url
        self.worker = NamespaceWorker(host)
        options = webdriver.ChromeOptions()
        options.binary_location = next(p for p in map(shutil.which, CHROMIUM) if p)
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--ignore-certificate-errors",  # the coordinator's self-made certificate
            "--window-size=1200,900",
        ):
            options.add_argument(argument)
        service = Service(shutil.which(CHROMEDRIVER))
        self.driver = self.worker.call(lambda: webdriver.Chrome(options=options, service=service))

    def do(self, action: Callable[[Any], T]) -> T:
        """`action(driver)` on the namespace's thread."""
        return self.worker.call(lambda: action(self.driver))

    def open(self, path: str) -> None:
        self.do(lambda d: d.get(self.base_url + path))

    def path(self) -> str:
        url: str = self.do(lambda d: d.current_url)
        return url.removeprefix(self.base_url)

    def _find(self, driver: Any, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Click what submits a form or follows a link, and wait for the next page."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def click(d: Any) -> None:
            page = self._find(d, "html")
            self._find(d, css).click()

            def replaced(_: Any) -> bool:
                # chromedriver reports the old page's element as stale, or, while the new
                # page is being put in place, as a node that "does not belong to the document"
                try:
                    page.is_enabled()
                except WebDriverException:
                    return True
                return False

            WebDriverWait(d, PAGE_TIMEOUT).until(replaced)

        self.do(click)

    def tick(self, css: str) -> None:
        """Click what stays on the page (a checkbox)."""
        self.do(lambda d: self._find(d, css).click())

    def fill(self, css: str, text: str) -> None:
        def fill(d: Any) -> None:
            element = self._find(d, css)
            element.clear()
            element.send_keys(text)

        self.do(fill)

    def text(self, css: str) -> str:
        return str(self.do(lambda d: self._find(d, css).text))

    def texts(self, css: str) -> list[str]:
        from selenium.webdriver.common.by import By

        return self.do(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, css)])

    def count(self, css: str) -> int:
        from selenium.webdriver.common.by import By

        return len(self.do(lambda d: d.find_elements(By.CSS_SELECTOR, css)))

    def script(self, code: str, *args: Any) -> Any:
        return self.do(lambda d: d.execute_script(code, *args))

    def screenshot(self, css: str) -> bytes:
        return bytes(self.do(lambda d: self._find(d, css).screenshot_as_png))

    def close(self) -> None:
        try:
            self.do(lambda d: d.quit())
        finally:
            self.worker.close()
