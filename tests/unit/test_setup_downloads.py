"""Setup says what Maven downloads: a running total, large files as they start, a summary per step."""

from __future__ import annotations

from lakehouse.stack.install import DownloadMeter

REPO = "https://repo.maven.apache.org/maven2"
LINES = [
    f"[INFO] Downloading from central: {REPO}/org/x/a/1/a-1.pom",
    f"[INFO] Downloaded from central: {REPO}/org/x/a/1/a-1.pom (2.5 kB at 40 kB/s)",
    f"[INFO] Downloaded from central: {REPO}/org/x/b/1/b-1.jar (1,234 kB at 3 MB/s)",
    f"[INFO] Downloading from central: {REPO}/io/trino/trino-server/476/trino-server-476.tar.gz",
    f"[INFO] Downloaded from central: {REPO}/io/trino/trino-server/476/trino-server-476.tar.gz (512 MB at 40 MB/s)",
    "[INFO] BUILD SUCCESS",
]


def test_the_meter_adds_up_maven_transfers_and_announces_large_ones() -> None:
    said: list[str] = []
    meter = DownloadMeter(said.append, "trino server", every_s=3600)
    for line in LINES:
        meter.feed(line)
    assert meter.files == 3
    assert meter.bytes == 2_500 + 1_234_000 + 512_000_000
    assert meter.summary() == "downloaded 513.2 MB in 3 files"
    assert said == ["      downloading trino-server-476.tar.gz (large; Maven reports it when done)"]


def test_a_cached_step_says_so() -> None:
    meter = DownloadMeter(print, "kafka")
    meter.feed("[INFO] BUILD SUCCESS")
    assert meter.summary() == "nothing downloaded (cached)"
