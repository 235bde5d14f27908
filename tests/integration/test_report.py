"""The HTML report of a real run, rendered in headless Chromium: loads without console errors, every plot present."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]


def discover(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_report_renders_with_every_plot_and_no_console_errors(small_bandit_run, tmp_path: Path):
    task, db, summary = small_bandit_run
    report = tmp_path / "report.html"
    discover("report", str(db), "-o", str(report), "--top", "3", "--verify-top", "1", "--task", str(task))
    html_text = report.read_text()
    assert "src=\"data:image/png;base64," in html_text  # self-contained: plots embedded
    assert "http://" not in html_text and "https://" not in html_text  # nothing fetched from elsewhere
    for heading in ("Search progress", "Pareto front", "Final selected models: test-split scores",
                    f"Program {summary['best_id']}", "Posterior predictive checks", "Program against each model",
                    "Ablation"):
        assert heading in html_text, heading

    profile = tmp_path / "profile"
    rendered = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    loaded = re.search(r'data-plots-loaded="(\d+)"', rendered.stdout)
    total = re.search(r'data-plots-total="(\d+)"', rendered.stdout)
    assert loaded and total, "the page's load handler did not run"
    assert int(total.group(1)) >= 4 and loaded.group(1) == total.group(1)
    console_errors = [line for line in rendered.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors, console_errors

    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1100,2400", f"--screenshot={screenshot}",
         report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000
    stored = json.loads(discover("verify", str(db), str(summary["best_id"]), "--task", str(task), "--fit-seeds", "2",
                                 "--json"))
    assert stored["test_scores"]["program"]["score"] is not None
    # Two fits per model: the first with the run's seed (the stored score), the second with the next seed.
    assert len(stored["fit_seeds"]) == 2 and stored["fit_seeds"][1] == stored["fit_seeds"][0] + 1
    for row in stored["test_scores"].values():
        assert len(row["scores_by_fit_seed"]) == 2 and row["scores_by_fit_seed"][0] == row["score"]
    assert stored["complexity"]["num_params"] >= 2
    # The program against the seed: a paired interval over the test sessions; AIC and BIC of every fitted model.
    against_seed = stored["comparisons"]["seed"]
    assert against_seed["low"] <= against_seed["mean"] <= against_seed["high"] and against_seed["n"] >= 2
    criteria = stored["test_scores"]["program"]["information_criteria"]
    assert criteria["num_fitted"] == stored["complexity"]["num_params"] and criteria["aic"] < criteria["bic"]
    assert [row["parameter"] for row in stored["ablation"]] == list(stored["fitted_params"]["all"])
    # A knocked-out program can fail (a parameter that divides, fixed at 0) or predict some sessions with
    # probability 0; then the row says why it has no change.
    assert all(row["change"] is not None or row["detail"] for row in stored["ablation"]), stored["ablation"]
    assert any(row["change"] is not None for row in stored["ablation"])
    # Whenever two or more simulated sets were refitted, the engine draws them all on one plot, last.
    refitted = max((len(pairs) for pairs in stored["recovery_pairs"].values()), default=0)
    titles = [figure["title"] for figure in stored["figures"]]
    assert (titles[-1:] == ["Parameter recovery: refitted vs generating values"]) == (refitted >= 2), (refitted, titles)


class _Tags(HTMLParser):
    """Collects every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def test_values_from_a_tampered_database_stay_text_in_the_report(small_bandit_run, tmp_path: Path):
    _, db, summary = small_bandit_run
    tampered = tmp_path / "tampered.db"
    shutil.copy(db, tampered)
    markup = "<script>alert(1)</script>"
    with sqlite3.connect(tampered) as connection:  # written the way anyone with the file could
        connection.execute(
            "UPDATE programs SET parent_ids = ?, num_params = 'many', ast_size = '<b>big</b>', proposer = ?, "
            "source = source || ?, fitted_params = ? WHERE id = ?",
            (json.dumps([markup, 1]), "<img src=x onerror=alert(2)>", f"\n# </pre>{markup}\n",
             json.dumps({"<b>alpha</b>": 0.5, "beta": "<u>x</u>"}), summary["best_id"]),
        )
    page = tmp_path / "report.html"
    discover("report", str(tampered), "-o", str(page), "--top", "1000", "--verify-top", "0")
    text = page.read_text()
    parser = _Tags()
    parser.feed(text)
    names = [tag for tag, _ in parser.tags]
    assert names.count("script") == 1  # the report's own load handler, nothing from the database
    assert not {"b", "u"} & set(names)
    assert all(attrs.get("class") == "plot" and attrs["src"].startswith("data:image/png;base64,")
               for tag, attrs in parser.tags if tag == "img")
    assert not any(name.startswith("on") for _, attrs in parser.tags for name in attrs)
    for shown in ("&lt;script&gt;alert(1)&lt;/script&gt;", "many", "&lt;b&gt;big&lt;/b&gt;",
                  "&lt;img src=x onerror=alert(2)&gt;", "&lt;b&gt;alpha&lt;/b&gt;", "&lt;u&gt;x&lt;/u&gt;"):
        assert shown in text, shown


def test_a_report_of_a_database_a_run_still_writes_shows_what_is_stored(small_bandit_run, tmp_path: Path):
    """Verifications are written through the store under the one writer's lock: while a run holds it, the report
    verifies nothing new and says so, instead of writing beside the run."""
    from islands import SqliteStore

    _, db, _ = small_bandit_run
    copy = tmp_path / "live.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as connection:
        connection.execute("DELETE FROM verifications")
    run = SqliteStore(copy)  # the run writing the file
    try:
        page = tmp_path / "report.html"
        discover("report", str(copy), "-o", str(page), "--top", "2", "--verify-top", "1")
        assert "not verified now: another process is writing to" in page.read_text()
    finally:
        run.close()
    with sqlite3.connect(copy) as connection:
        assert connection.execute("SELECT COUNT(*) FROM verifications").fetchone() == (0,)
