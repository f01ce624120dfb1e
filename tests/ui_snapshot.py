"""Pages of the Dagster UI rendered by headless Chromium: a PNG, the DOM, or both.

The browser is Debian's ``chromium`` package, which ``lakehouse setup`` installs; no other
browser is ever downloaded. Chromium runs once per page with a throwaway profile and
``--virtual-time-budget``: the page's clock runs ahead while the browser waits for nothing,
so the React app gets its data and settles before the PNG is taken and the DOM is
serialised, in the same run. A SPA page can still be caught half-loaded, so callers pass
``ready``, a test on the DOM, and a page that fails it is rendered again.

No Dagster import: the webserver is asked over HTTP (GraphQL) which assets it shows.

The UI is HTTPS with a login (``lakehouse.services.dagster_guard``): each render opens a fresh one-time
login link that redirects to the page, and Chromium trusts exactly the stack's server key
(``--ignore-certificate-errors-spki-list`` with its SPKI hash), not any certificate.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lakehouse.services import dagster_guard as dagster_web
from lakehouse.services.dagster_api import graphql
from lakehouse.settings import SERVER_CERT, Settings, child_env, get_settings

#: Names the Debian (``chromium``) and Ubuntu (``chromium-browser``) packages put on PATH.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
#: The browser behind Debian's /usr/bin/chromium launcher script. Called directly: the launcher
#: adds flags of its own (extensions, GPU rasterisation) and its /dev/shm check prints shell errors.
DEBIAN_BROWSER = Path("/usr/lib/chromium/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the setuid/namespace sandbox is unavailable
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a small /dev/shm crashes the renderer; use /tmp instead
    "--disable-background-networking",  # nothing but the page: no update checks, no safe browsing
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--lang=en-US",
)
#: What Chromium prints on every start in a container without a session bus: noise, not a cause.
_NOISE = re.compile(r"dbus|Fontconfig|sandbox_linux|viz_main_impl|gpu_init|command_buffer")
_ERROR_PAGE = re.compile(r'id="main-frame-error"|<div id="error-information-popup-content"')
_NET_ERROR = re.compile(r"(ERR_[A-Z_]+)")


class ChromiumMissing(RuntimeError):
    """No Chromium on this machine; the message says how to install it."""


class RenderError(RuntimeError):
    """Chromium ran but did not produce the page (timeout, crash, unreachable URL)."""


def find_chromium() -> Path:
    """The Chromium executable: Debian's browser binary, else ``chromium``/``chromium-browser`` on PATH."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found is None:
            continue
        path = Path(found)
        if DEBIAN_BROWSER.is_file() and os.access(DEBIAN_BROWSER, os.X_OK) and _is_script(path):
            return DEBIAN_BROWSER
        return path
    raise ChromiumMissing(
        f"headless Chromium is missing: none of {', '.join(CHROMIUM_NAMES)} is on PATH. "
        "Run `make setup` (as root it installs Debian's `chromium` package; otherwise it prints the "
        "`sudo apt-get install -y chromium` line to run)"
    )


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def chromium_version(binary: Path | None = None) -> str:
    binary = binary or find_chromium()
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() or proc.stderr.strip()


def server_spki_hash(s: Settings) -> str:
    """Base64 SHA-256 of the stack's server public key: what Chromium's SPKI allowlist takes."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((s.secrets_dir / SERVER_CERT).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _login_url(s: Settings, url: str) -> str:
    """URL of the Dagster UI or the dashboards behind a one-time login link (other URLs unchanged)."""
    for base in (s.dagster_url, s.dashboard_url):
        if url.startswith(base + "/"):
            return dagster_web.login_link(s, "engineer", url[len(base) :], base_url=base)
    return url


def _render_once(url: str, *, wait_ms: int, width: int, height: int, out_png: Path | None) -> str:
    binary = find_chromium()
    s = get_settings()
    timeout_s = 60 + 2 * wait_ms / 1000
    with tempfile.TemporaryDirectory(prefix="lakehouse-chromium-", ignore_cleanup_errors=True) as profile:
        cmd = [
            str(binary),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            f"--ignore-certificate-errors-spki-list={server_spki_hash(s)}",
            "--dump-dom",
        ]
        if out_png is not None:
            out_png.parent.mkdir(parents=True, exist_ok=True)
            out_png.unlink(missing_ok=True)
            cmd.append(f"--screenshot={out_png}")
        cmd.append(_login_url(s, url))
        # Its own process group: on a timeout the browser's helpers (zygote, renderer, GPU) go too.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=profile,
            start_new_session=True,
        )
        try:
            dom, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RenderError(f"chromium did not finish rendering {url} within {timeout_s:.0f}s") from None
    if proc.returncode != 0:
        raise RenderError(f"chromium exited with {proc.returncode} rendering {url}:\n{_tail(err)}")
    if _ERROR_PAGE.search(dom):
        code = _NET_ERROR.search(dom)
        raise RenderError(f"chromium could not load {url}: {code.group(1) if code else 'error page'} (is it up?)")
    if out_png is not None and (not out_png.exists() or out_png.stat().st_size == 0):
        raise RenderError(f"chromium wrote no screenshot of {url} to {out_png}:\n{_tail(err)}")
    return dom


def _tail(stderr: str, lines: int = 15) -> str:
    useful = [line for line in stderr.splitlines() if line.strip() and not _NOISE.search(line)]
    return "\n".join(useful[-lines:]) or "(nothing on stderr)"


def _render(
    url: str,
    *,
    wait_ms: int,
    width: int,
    height: int,
    out_png: Path | None,
    ready: Callable[[str], bool] | None,
    attempts: int,
) -> str:
    dom = ""
    for _ in range(max(1, attempts)):
        dom = _render_once(url, wait_ms=wait_ms, width=width, height=height, out_png=out_png)
        if ready is None or ready(dom):
            break
    return dom


def snapshot(
    url: str,
    out_png: Path,
    wait_ms: int = 15_000,
    width: int = 1600,
    height: int = 1100,
    *,
    ready: Callable[[str], bool] | None = None,
    attempts: int = 3,
) -> str:
    """Screenshot ``url`` into ``out_png``; return the DOM as it was when the picture was taken.

    With ``ready``, a page whose DOM fails it is rendered again, up to ``attempts`` times; the
    last DOM is returned either way, for the caller to judge.
    """
    return _render(url, wait_ms=wait_ms, width=width, height=height, out_png=out_png, ready=ready, attempts=attempts)


def dump_dom(
    url: str,
    wait_ms: int = 15_000,
    width: int = 1600,
    height: int = 1100,
    *,
    ready: Callable[[str], bool] | None = None,
    attempts: int = 3,
) -> str:
    """The DOM of ``url`` after it rendered (lists are virtualised: ``height`` decides how many rows exist)."""
    return _render(url, wait_ms=wait_ms, width=width, height=height, out_png=None, ready=ready, attempts=attempts)


def page_text(dom: str) -> str:
    """The text of a DOM: scripts, styles and tags removed, entities decoded, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def text_nodes(dom: str) -> Counter[str]:
    """How often each exact text node (an element's whole text, e.g. a graph node's label) occurs."""
    return Counter(html.unescape(t).strip() for t in re.findall(r">([^<>]+)<", dom))


# -- PNG: enough of a decoder to tell a picture from a blank page ------------------------
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (8-bit, no palette)


@dataclass(frozen=True)
class PngStats:
    width: int
    height: int
    size_bytes: int
    distinct_colours: int
    #: Share of the pixels that have the most common colour (1.0: one flat colour).
    dominant_share: float

    @property
    def looks_blank(self) -> bool:
        return self.distinct_colours < 64 or self.dominant_share > 0.95


def png_stats(path: Path) -> PngStats:
    """Decode an 8-bit, non-interlaced PNG (what Chromium writes) and count its colours."""
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"{path} is not a PNG (starts with {data[:8]!r})")
    pos, idat = 8, []
    width = height = depth = colour = interlace = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"{path}: unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = _CHANNELS[colour]
    counts: Counter[bytes] = Counter()
    for row in _unfilter(zlib.decompress(b"".join(idat)), width * bpp, height, bpp):
        counts.update(row[x : x + min(bpp, 3)] for x in range(0, len(row), bpp))
    total = width * height
    return PngStats(width, height, len(data), len(counts), counts.most_common(1)[0][1] / total if total else 1.0)


def _unfilter(raw: bytes, stride: int, height: int, bpp: int) -> Iterable[bytes]:
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad PNG filter type {kind} in row {y}")
        yield bytes(line)
        prev = line


# -- the Dagster UI ----------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class UiAsset:
    path: tuple[str, ...]
    group: str
    repository: str
    location: str

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def label(self) -> str:
        """How the asset catalog writes the key: ``silver / payments``."""
        return " / ".join(self.path)


_ASSETS = "{ assetNodes { assetKey { path } groupName repository { name location { name } } } }"


def dagster_assets(s: Settings) -> list[UiAsset]:
    """The assets the running webserver serves, from its GraphQL API."""
    nodes = graphql(s, _ASSETS)["assetNodes"]
    return sorted(
        UiAsset(
            tuple(n["assetKey"]["path"]),
            n.get("groupName") or "default",
            n["repository"]["name"],
            n["repository"]["location"]["name"],
        )
        for n in nodes
    )


def skip_community_dialog(s: Settings) -> None:
    """Record the 'Join the Dagster community' dialog as seen, as its Skip button does.

    The UI shows it to a new browser on 127.0.0.1 a second after load, over whatever page is open.
    """
    graphql(s, "mutation { setNuxSeen }")


def catalog_url(s: Settings) -> str:
    """The asset catalog: one row per asset key."""
    return f"{s.dagster_url}/assets"


def lineage_url(s: Settings, assets: Iterable[UiAsset]) -> str:
    """The global asset lineage graph with every group expanded (the UI collapses them when there are several).

    ``expanded`` takes group ids, ``global@global:<group>``, or ``<repository>@<location>:<group>`` when
    the UI groups per code location; both forms are given, an id matching no group is ignored.
    """
    ids: list[str] = []
    for a in assets:
        for gid in (f"global@global:{a.group}", f"{a.repository}@{a.location}:{a.group}"):
            if gid not in ids:
                ids.append(gid)
    return f"{s.dagster_url}/asset-groups?expanded={quote(','.join(ids), safe='')}"


def missing_from_lineage(dom: str, assets: Iterable[UiAsset]) -> list[str]:
    """The assets (and groups) the lineage graph did not draw; empty when it is complete and unobstructed."""
    labels = text_nodes(dom)
    assets = list(assets)
    want = Counter(a.name for a in assets)
    missing = [f"{name} (x{n}, drawn {labels[name]})" for name, n in sorted(want.items()) if labels[name] < n]
    missing += [f"group {g}" for g in sorted({a.group for a in assets}) if labels[g] < 1]
    if "Join the Dagster community" in dom:
        missing.append("(the community dialog covers the page)")
    return missing


def missing_from_catalog(dom: str, assets: Iterable[UiAsset]) -> list[str]:
    text = page_text(dom)
    return [a.label for a in assets if a.label not in text]


#: Groups drawn on their own pages rather than expanded in the global graph: with them expanded too,
#: the global graph zooms out so far that Dagster draws its nodes without readable names.
OWN_PAGE_GROUPS: tuple[str, ...] = ("staging", "marts")


def _graph_snapshot(
    url: str, assets: list[UiAsset], out_png: Path, wait_ms: int, width: int, height: int
) -> tuple[str, list[UiAsset]]:
    """Screenshot a lineage page once it draws every one of ASSETS (or WAIT_MS passed)."""
    dom = snapshot(url, out_png, wait_ms, width, height, ready=lambda d: not missing_from_lineage(d, assets))
    return dom, assets


def group_lineage_url(s: Settings, asset: UiAsset) -> str:
    """One asset group's lineage page (its assets in full, their neighbours as links)."""
    return f"{s.dagster_url}/locations/{asset.repository}@{asset.location}/asset-groups/{asset.group}/lineage"


def group_snapshot(
    s: Settings, group: str, out_png: Path, width: int = 1600, wait_ms: int = 15_000
) -> tuple[str, list[UiAsset]]:
    """Screenshot one group's lineage page, tall enough for all its assets; return the DOM and its assets."""
    skip_community_dialog(s)
    assets = [a for a in dagster_assets(s) if a.group == group]
    if not assets:
        raise ValueError(f"no asset group {group!r} in the code location")
    height = max(1100, 400 + 230 * len(assets))
    return _graph_snapshot(group_lineage_url(s, assets[0]), assets, out_png, wait_ms, width, height)


def lineage_snapshot(
    s: Settings, out_png: Path, width: int = 1600, height: int = 1100, wait_ms: int = 15_000
) -> tuple[str, list[UiAsset]]:
    """Screenshot the global asset graph into ``out_png``, every group expanded but OWN_PAGE_GROUPS (drawn
    as one box each); return the DOM and the assets it should show by name."""
    skip_community_dialog(s)
    assets = [a for a in dagster_assets(s) if a.group not in OWN_PAGE_GROUPS]
    return _graph_snapshot(lineage_url(s, assets), assets, out_png, wait_ms, width, height)
