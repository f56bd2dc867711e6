"""The built site as a reader's browser shows it: every page of ``book/_build/html`` in headless Chromium.

    python -m rotcore.sitecheck book/_build/html      # or: make browser-check (installs the browser first)

Serves the folder on 127.0.0.1 and, for every page: no JavaScript console errors, every ``<img>`` loaded
(``naturalWidth > 0``), internal links answer HTTP 200, jshtml animations have their controls, no output
area is an empty box (widget outputs must show their static fallback), and a full-page screenshot goes to
``book/_build/screenshots/``. Then the search page must find each study page by a word of its title, and the
numbers in the summary's tables must equal those in the results JSON the summary was built from.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/browser_setup.sh``) and ``selenium``. Not
checked: external resources (CDNs) are allowed to fail to load, since CI has no network; a failure that
names an external URL is reported as a note, not a failure.
"""

from __future__ import annotations

import argparse
import functools
import html as _html
import http.server
import json
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_STOP = {"with", "from", "over", "just", "does", "that", "this", "their", "rotation", "rotated", "rotates",
         "rotating", "study"}

# One script per page: what the browser sees (images, links, animations, empty outputs, title).
_PAGE_JS = """
const imgs = [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
const anims = [...document.querySelectorAll('div.animation')].map(d => ({
  slider: d.querySelectorAll('input[type=range]').length, buttons: d.querySelectorAll('button').length,
  frame: [...d.querySelectorAll('img')].some(i => i.naturalWidth > 0)}));
const empty = [...document.querySelectorAll('.cell_output .output, .cell_output > div')].filter(o =>
  o.offsetHeight === 0 || (!o.innerText.trim() && !o.querySelector('img,svg,canvas,table,video,iframe')))
  .map(o => (o.className || o.tagName) + (o.querySelector('script[type*="widget"]') ? ' (widget)' : ''));
const h1 = document.querySelector('main h1, article h1, h1');
return {imgs, links, anims, empty, title: h1 ? h1.innerText.replace(/[#¶]/g, '').trim() : document.title};
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep CI logs readable
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # the browser cancelled a request: not the site's fault
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a daemon thread; returns the server and its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def make_driver(profile_dir: Path, *, chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER):
    """Headless Chromium under Selenium, with a fresh profile and no background network traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    return driver


def _is_external(message: str, base: str) -> bool:
    urls = re.findall(r"https?://[^\s\"')]+", message)
    return bool(urls) and not any(u.startswith(base) for u in urls) and (
        "Failed to load resource" in message or "net::ERR_" in message)


def _wait_for_images(driver, timeout_s: float = 5.0) -> None:
    driver.execute_script("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not driver.execute_script(
            "return [...document.images].every(i => i.complete)"):
        time.sleep(0.1)


def screenshot(driver, path: Path, *, max_height: int = 20000) -> None:
    """A full-page PNG (Chrome DevTools' captureBeyondViewport), cut at ``max_height`` CSS pixels."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(driver, base: str, rel: str, *, shots: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """Open one page; returns its failures (each naming the page) and what it saw."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(base + rel)
    _wait_for_images(driver)
    seen = driver.execute_script(_PAGE_JS)
    failures, notes = [], []
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE" and "/favicon.ico" not in entry["message"]:  # the browser's own request
            (notes if _is_external(entry["message"], base) else failures).append(f"JS console error: {entry['message']}")
    for img in seen["imgs"]:
        if not img["ok"] and img["src"].startswith(base):
            failures.append(f"image not loaded: {img['src'][len(base):]}")
        elif not img["ok"]:
            notes.append(f"external image not loaded (offline?): {img['src']}")
    for i, a in enumerate(seen["anims"]):
        if not (a["slider"] and a["buttons"] and a["frame"]):
            failures.append(f"animation {i + 1} lacks its controls or frame "
                            f"(slider {a['slider']}, buttons {a['buttons']}, frame shown {a['frame']})")
    failures += [f"empty output box: {what}" for what in seen["empty"]]
    if shots is not None:
        screenshot(driver, shots / (rel.replace("/", "__").removesuffix(".html") + ".png"))
    seen["notes"] = notes
    return [f"{rel}: {f}" for f in failures], seen


def check_links(links: set[str], base: str) -> list[str]:
    """Every same-site link (fragment dropped) must answer HTTP 200 from the local server."""
    failures = []
    for url in sorted({u.split("#")[0] for u in links if u.startswith(base)}):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as err:
            status = err.code
        except OSError as err:
            status = str(err)
        if status != 200:
            failures.append(f"{url[len(base):] or '/'}: link target answers {status}")
    return failures


def title_word(title: str) -> str:
    """A distinctive word of a page title to search for (the longest one not on a short stop list)."""
    words = [w for w in re.findall(r"[A-Za-z]{4,}", title) if w.lower() not in _STOP]
    return max(words, key=len) if words else title.split()[0]


def check_search(driver, base: str, studies: dict[str, str], *, timeout_s: float = 10.0) -> list[str]:
    """Sphinx's search page must list each study page (``rel -> title``) when searched for a word of its title."""
    failures = []
    for rel, title in studies.items():
        word = title_word(title)
        driver.get(f"{base}search.html?q={urllib.request.quote(word)}")
        end, found = time.monotonic() + timeout_s, []
        while time.monotonic() < end:
            found = driver.execute_script(
                "return [...document.querySelectorAll('#search-results li a, ul.search li a')].map(a => a.href)")
            if any(h.split("#")[0].split("?")[0].endswith(rel) for h in found):
                break
            time.sleep(0.2)
        else:
            failures.append(f"search.html: searching {word!r} (from the title of {rel}) does not list {rel} "
                            f"({len(found)} results)")
    return failures


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text.replace("−", "-").replace(",", ""))


def _close(shown: str, value: float) -> bool:
    """``shown`` (a number as printed) equals ``value`` to the precision it was printed with."""
    mantissa, _, exp = shown.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    tol = 0.5 * 10.0 ** (-decimals) * (10.0 ** int(exp) if exp else 1.0)
    return abs(float(shown) - value) <= tol * (1 + 1e-9) + 1e-12


_SMART = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _plain(text: str) -> str:
    """Undo Sphinx's smart quotes, so a label typed with ' matches its rendered ’."""
    return text.translate(_SMART)


def check_summary(page_html: str, results_root: Any) -> list[str]:
    """The numbers in the rendered summary equal those in the results JSON (per study, row by row).

    ``results_root(profile) -> Path`` names the folder of a profile's results. Each study section states its
    profile and commit; its results-table "this run" and checks-table "measured" cells are compared with the
    study's anchored metrics (value, and CI bounds when shown), by number, to the printed precision.
    """
    from rotcore.studies import STUDIES

    failures = []
    sections = re.split(r"<h2[^>]*>", page_html)[1:]
    for sec in sections:
        head = _html.unescape(re.sub(r"<[^>]+>", "", sec.split("</h2>")[0]))
        number = head.strip()[:2]
        if number not in STUDIES or "Not yet run" in sec:
            continue
        info = STUDIES[number]
        text = _html.unescape(re.sub(r"<[^>]+>", "", sec))
        m = re.search(r"Profile\s+(\S+)\s+·.*?commit\s+(\S+)", text)
        if not m:
            failures.append(f"summary.html: study {number}: no profile/commit line")
            continue
        profile, commit = m.groups()
        path = Path(results_root(profile)) / f"{info.name}.json"
        if not path.exists():
            failures.append(f"summary.html: study {number}: shows profile {profile} but {path} does not exist")
            continue
        rec = json.loads(path.read_text())
        if commit != rec["git_commit"]:
            failures.append(f"summary.html: study {number}: commit {commit} != {rec['git_commit']} in {path.name}")
        rows = {}
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", sec, flags=re.S):
            cells = [_html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                     for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)]
            if len(cells) >= 2:
                rows[_plain(cells[0])] = cells[1]
        for a in info.load().ANCHORS:
            shown = rows.get(_plain(a.label))
            if shown is None:
                failures.append(f"summary.html: study {number}: no row for {a.label!r}")
                continue
            value = rec["metrics"].get(a.metric)
            if value is None or isinstance(value, str):
                if value is None and shown != "—":
                    failures.append(f"summary.html: study {number}: {a.label!r} shows {shown!r}, JSON has null")
                continue
            expected = [value] + list(rec["metrics"].get(f"{a.metric}_ci95") or []) if a.kind == "result" else [value]
            nums = _numbers(shown.replace("95 % CI", ""))
            if len(nums) < 1 or not all(_close(s, v) for s, v in zip(nums, expected)):
                failures.append(f"summary.html: study {number}: {a.label!r} shows {shown!r}; "
                                f"{path.name} has {a.metric}={value}")
    return failures


def check_site(site: Path, *, shots: Path | None = None, results_root: Any = None, log=print) -> list[str]:
    """Every check on every page of the built site ``site``; returns the failures (empty: all good)."""
    site = Path(site)
    if results_root is None:
        from rotcore import paths

        results_root = paths.results_dir
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                   if not {"_static", "_sources", "_images"} & set(p.relative_to(site).parts))
    server, base = serve(site)
    failures: list[str] = []
    links: set[str] = set()
    studies: dict[str, str] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rotbook-chromium-") as profile_dir:
        driver = make_driver(Path(profile_dir))
        try:
            for rel in pages:
                page_failures, seen = check_page(driver, base, rel, shots=shots)
                failures += page_failures
                links |= set(seen["links"])
                if rel.startswith("studies/"):
                    studies[rel] = seen["title"]
                for note in seen["notes"]:
                    log(f"[browser-check] note: {rel}: {note}")
                log(f"[browser-check] {rel}: {'ok' if not page_failures else f'{len(page_failures)} failure(s)'}")
            if (site / "search.html").exists():
                failures += check_search(driver, base, studies)
        finally:
            driver.quit()
    failures += check_links(links, base)
    if (site / "summary.html").exists():
        failures += check_summary((site / "summary.html").read_text(), results_root)
    server.shutdown()
    log(f"[browser-check] {len(pages)} pages, {len(links)} links, {len(studies)} studies searched "
        f"in {time.perf_counter() - t0:.0f} s" + (f"; screenshots in {shots}" if shots else ""))
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rotcore.sitecheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="book/_build/html", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for full-page PNGs (default: <site>/../screenshots)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").exists():
        print(f"[browser-check] {args.site}/index.html is missing: build the site first (make site or make report)")
        return 2
    failures = check_site(args.site, shots=args.screenshots or args.site.parent / "screenshots")
    for f in failures:
        print(f"[browser-check] FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
