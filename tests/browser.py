"""A real headless Chromium for page tests: the DOM after scripts ran, and screenshots.

Works with file:// and http:// addresses (e.g. a uvicorn server started by a test). Tests that
need the browser call `require_chromium()` first: it skips with the reason when Debian's
`chromium` is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
)
TIMEOUT_SECONDS = 60.0


def chromium_binary() -> str | None:
    """Path of a Chromium, from $CHROMIUM or the usual names on PATH; None if there is none."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium on PATH (install Debian's `chromium` or set $CHROMIUM)")
    return binary


def run_chromium(url: str, *args: str, timeout: float = TIMEOUT_SECONDS) -> str:
    """Run Chromium on `url` with its own throwaway profile; stdout, or a failure with stderr."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", *args, url]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"Chromium did not finish within {timeout:g} s on {url}")
    if done.returncode != 0:
        pytest.fail(f"Chromium exited with {done.returncode} on {url}:\n{done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str, *, timeout: float = TIMEOUT_SECONDS) -> str:
    """The page's DOM as HTML after its scripts ran."""
    # A virtual-time budget lets timers and deferred work settle before the dump.
    return run_chromium(url, "--virtual-time-budget=3000", "--dump-dom", timeout=timeout)


def screenshot(
    url: str,
    path: Path,
    *,
    window_size: tuple[int, int] = (1280, 1600),
    timeout: float = TIMEOUT_SECONDS,
) -> Path:
    """A PNG of the page's first `window_size` pixels."""
    run_chromium(
        url,
        f"--screenshot={path}",
        f"--window-size={window_size[0]},{window_size[1]}",
        "--virtual-time-budget=3000",
        timeout=timeout,
    )
    if not path.exists():
        pytest.fail(f"Chromium wrote no screenshot for {url}")
    return path


@dataclass(frozen=True)
class ImageStats:
    distinct_colours: int  # among the pixels of a downscaled copy
    non_white_share: float  # share of pixels that are not (near) white


def image_stats(path: Path) -> ImageStats:
    from PIL import Image  # only the screenshot tests need Pillow

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB").resize((320, 400))).reshape(-1, 3)
    non_white = pixels.min(axis=1) < 235
    return ImageStats(len(np.unique(pixels, axis=0)), float(non_white.mean()))


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class _ById(HTMLParser):
    """Collects every element that has an id, with its attributes and text content."""

    _VOID = frozenset(
        ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source")
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, Element] = {}
        self.stack: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if self.stack:
            self.stack[-1].children.append(element)
        if "id" in element.attrs:
            self.found.setdefault(element.attrs["id"], element)
        if tag not in self._VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        # Close up to the matching open tag (tolerates unclosed <p>, <li> ...).
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


def elements_by_id(dom: str) -> dict[str, Element]:
    """id -> element (tag, attributes, whitespace-normalised text) of an HTML document."""
    parser = _ById()
    parser.feed(dom)
    parser.close()
    for element in parser.found.values():
        element.text = " ".join(element.text.split())
    return parser.found


def descendants(element: Element, tag: str) -> list[Element]:
    out: list[Element] = []
    for child in element.children:
        if child.tag == tag:
            out.append(child)
        out.extend(descendants(child, tag))
    return out
