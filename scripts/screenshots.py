"""A screenshot of the MLflow compare view, taken from a real browser (headless Chromium).

Starts ``mlflow ui`` on the store, selects the runs matching ``--filter`` (by default the paper
pipeline's method comparison), opens the compare view with them, picks the parallel-coordinates
axes, and saves a PNG. The clicks are the ones the README describes.

    pip install -e ".[docs]"       # playwright; the browser is the system's Chromium
    python scripts/mlflow_compare_screenshot.py --out docs/mlflow_compare.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient
from playwright.sync_api import Page, sync_playwright

from selfsup.tracking import EXPERIMENT


def wait_for_server(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"mlflow ui did not answer at {url} within {timeout:.0f} s")


def choose(page: Page, select_index: int, names: list[str]) -> None:
    """Type each name into the ``select_index``-th multi-select and click the option that matches exactly."""
    page.locator(".du-bois-light-select-selector").nth(select_index).click()
    for name in names:
        page.keyboard.type(name)
        page.locator(".du-bois-light-select-item-option", has_text=name).filter(
            has=page.get_by_text(name, exact=True)).first.click()
    page.keyboard.press("Escape")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="sqlite:///mlflow.db", help="MLflow tracking URI")
    parser.add_argument("--filter", default="tags.figure = 'method_comparison' and attributes.status = 'FINISHED'",
                        help="MLflow search filter choosing the runs")
    parser.add_argument("--params", nargs="*", default=["lr"], help="parallel-coordinates parameter axes")
    parser.add_argument("--metrics", nargs="*", default=["train/collapse_std_x_sqrt_d", "test/knn_top1",
                                                         "test/linear_top1"], help="metric axes (the last colours)")
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow_compare.png"))
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="Chromium executable")
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("no Chromium found: install it (apt install chromium) or pass --chromium PATH")

    client = MlflowClient(args.store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise SystemExit(f"no {EXPERIMENT!r} experiment in {args.store}; run the pipeline first")
    runs = client.search_runs([experiment.experiment_id], args.filter, order_by=["metrics.`test/linear_top1` DESC"])
    if not runs:
        raise SystemExit(f"no run matches {args.filter!r} in {args.store}")
    ids = [r.info.run_id for r in runs]
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.store,
                               "--host", "127.0.0.1", "--port", str(args.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1020})
            page.goto(f"{url}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment.experiment_id])}")
            page.get_by_text("Parallel Coordinates Plot").wait_for(timeout=60_000)
            page.wait_for_timeout(2000)
            assistant = page.get_by_text("MLflow Assistant")
            if assistant.count():
                page.locator("button[aria-label='Close']").last.click()
            page.get_by_text("Clear All").click()
            choose(page, 0, args.params)
            choose(page, 1, args.metrics)
            page.mouse.click(5, 5)
            page.wait_for_timeout(1500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out} ({len(ids)} runs)")


if __name__ == "__main__":
    main()
