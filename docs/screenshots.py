"""Draw the dashboard screenshots of docs/operations.md from a real simulated night shift.

Runs examples/tio2_night_shift.yaml (4 experiments, a hung XRD scan injected into the second,
every proposal waiting for approval and approved by the timeout policy after 5 s) with its
dashboard, and photographs the page in Debian's Chromium (playwright drives it):

    python docs/screenshots.py docs/images
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

from sdl.campaign.config import parse_campaign
from sdl.loop.runner import CampaignRunner
from sdl.views.dashboard import Dashboard

CAMPAIGN = Path(__file__).parent.parent / "examples" / "tio2_night_shift.yaml"


def night_shift(data_dir: str) -> CampaignRunner:
    data = yaml.safe_load(CAMPAIGN.read_text())
    data.update(
        data_dir=data_dir,
        budget=4,
        agent={"name": "random"},
        approval={"mode": "all", "timeout_s": 5, "on_timeout": "approve"},
        watchdog={"expected_s": 1.0, "factor": 2, "min_s": 4},
    )
    data["devices"].update(
        speedup=5000.0,
        action_timeout_s=None,
        faults={"timeout": {"at": [1], "devices": ["xrd"]}},  # the second scan never ends
    )
    return CampaignRunner(parse_campaign(data))


def photograph(url: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#waiting .proposal").first.wait_for(timeout=60_000)
        page.screenshot(path=out / "dashboard-approval-waiting.png")
        page.wait_for_function(
            "document.getElementById('alerts').textContent.includes('hang')"
            " && document.querySelector('#waiting .proposal')",
            timeout=120_000,
        )
        page.wait_for_timeout(1000)  # let the figures settle
        page.locator("#alerts").scroll_into_view_if_needed()
        page.screenshot(path=out / "dashboard-hang-alert.png", full_page=True)
        browser.close()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir:
        runner = night_shift(data_dir)
        dashboard = Dashboard.for_runner(runner)
        browser = threading.Thread(target=photograph, args=(dashboard.start(), out))
        browser.start()
        try:
            runner.run()
        finally:
            browser.join()
            dashboard.stop()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
