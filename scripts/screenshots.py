"""Screenshots of the MLflow UI and of `dvc plots show`, taken in a real browser (headless Chromium).

Run in a repository where `dvc repro` (and, for a comparison, a `dvc exp run`) has run. Starts
``mlflow ui`` on the store and writes, under ``--out``:

- ``mlflow_runs.png``: the runs table in the experiment's ``headline`` view (the link the README gives),
- ``mlflow_run.png``: the newest image run's page, on one of the figures logged to it,
- ``mlflow_compare.png``: the compare view of the image runs, parallel coordinates of ``--params``
  and ``--metrics``, after the clicks the README describes,
- ``dvc_plots.png``: the page ``dvc plots show`` writes, loaded with every network request refused.

    pip install -e ".[docs]"       # playwright; the browser is the system's Chromium
    python scripts/screenshots.py --out docs
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
from playwright.sync_api import Browser, Page, sync_playwright

from selfsup.tracking import EXPERIMENT, VIEW


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


def close_assistant(page: Page) -> None:
    """MLflow 3 opens an assistant side panel on a first visit; close it so the page has the width."""
    close = page.locator("button[aria-label='Close']")
    if page.get_by_text("MLflow Assistant").count() and close.count():
        close.last.click()
        page.wait_for_timeout(500)


def choose(page: Page, select_index: int, names: list[str]) -> None:
    """Type each name into the ``select_index``-th multi-select and click the option that matches exactly."""
    page.locator(".du-bois-light-select-selector").nth(select_index).click()
    for name in names:
        page.keyboard.type(name)
        page.locator(".du-bois-light-select-item-option", has_text=name).filter(
            has=page.get_by_text(name, exact=True)).first.click()
    page.keyboard.press("Escape")


def shoot_mlflow(browser: Browser, url: str, experiment_id: str, runs: list, out: Path, params: list[str],
                 metrics: list[str]) -> None:
    page = browser.new_page(viewport={"width": 1800, "height": 900})
    page.goto(f"{url}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW}")
    page.get_by_text(runs[0].info.run_name).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    close_assistant(page)
    page.screenshot(path=str(out / "mlflow_runs.png"))

    image = runs[0]
    page.goto(f"{url}/#/experiments/{experiment_id}/runs/{image.info.run_id}/artifacts/figures/method_curves.png")
    page.get_by_text("method_curves.png").first.wait_for(timeout=60_000)
    page.wait_for_timeout(3000)
    close_assistant(page)
    page.screenshot(path=str(out / "mlflow_run.png"))

    ids = [r.info.run_id for r in runs]
    page.goto(f"{url}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment_id])}")
    page.get_by_text("Parallel Coordinates Plot").wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    close_assistant(page)
    page.get_by_text("Clear All").click()
    choose(page, 0, params)
    choose(page, 1, metrics)
    page.mouse.click(5, 5)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "mlflow_compare.png"))
    page.close()


def shoot_plots(browser: Browser, index: Path, out: Path) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(index.resolve().as_uri())
    page.wait_for_timeout(3000)
    charts = page.evaluate("document.querySelectorAll('svg.marks, canvas.marks').length")
    if not charts:
        raise SystemExit(f"{index} drew no chart offline")
    page.screenshot(path=str(out / "dvc_plots.png"), full_page=True)
    page.close()
    print(f"dvc plots: {charts} charts drawn offline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="sqlite:///mlflow.db", help="MLflow tracking URI")
    parser.add_argument("--filter", default="tags.stage = 'pretrain' and attributes.status = 'FINISHED'",
                        help="MLflow search filter choosing the runs to compare")
    parser.add_argument("--params", nargs="*", default=["method"], help="parallel-coordinates parameter axes")
    parser.add_argument("--metrics", nargs="*", default=["image/random_linear_top1", "image/knn_top1",
                                                         "image/linear_top1"], help="metric axes (the last colours)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
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
    runs = client.search_runs([experiment.experiment_id], args.filter, order_by=["attributes.start_time DESC"])
    if not runs:
        raise SystemExit(f"no run matches {args.filter!r} in {args.store}")
    proc = subprocess.run(["dvc", "plots", "show"], capture_output=True, text=True)
    if proc.returncode != 0 or "failed" in proc.stdout + proc.stderr:
        raise SystemExit(f"`dvc plots show` did not succeed:\n{proc.stdout}{proc.stderr}")
    args.out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.store,
                               "--host", "127.0.0.1", "--port", str(args.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            shoot_mlflow(browser, url, experiment.experiment_id, runs, args.out, args.params, args.metrics)
            shoot_plots(browser, Path("dvc_plots/index.html"), args.out)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    names = ("mlflow_runs.png", "mlflow_run.png", "mlflow_compare.png", "dvc_plots.png")
    print(f"wrote {', '.join(str(args.out / n) for n in names)} ({len(runs)} runs compared)")


if __name__ == "__main__":
    main()
