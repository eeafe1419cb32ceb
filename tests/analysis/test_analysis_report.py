"""The report: both files, images embedded, findings derived from the data, plain when nothing differs."""

from __future__ import annotations

import base64
import re

from analysis_synth import planted

from balloonsim.analysis import finish, report


def test_report_files_and_embedded_images(finished_dir):
    md = (finished_dir / "REPORT.md").read_text()
    page = (finished_dir / "report.html").read_text()
    for heading in ("## Answer", "## The experiment", "## Survival", "## Findings", "## Figures", "## Method"):
        assert heading in md
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == md.count("![") >= 4
    assert base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert 'src="plots/' not in page and "<style>" in page
    # experiment description: factors and levels, runs, executor
    assert "| factor `onlining.delay_s` | 0, 2, 5, 10 |" in md
    assert "| fixed `guest.block_size` | 128M |" in md
    assert "local (2 processes)" in md


def test_report_findings_follow_the_planted_truth(finished_dir):
    md = (finished_dir / "REPORT.md").read_text()
    answer = md.split("## The experiment")[0]
    # synthetic truth: altmap crashes on partial backing; kmalloc's -ENOMEM and OOM kills grow with the delay
    assert re.search(r"- \*\*altmap\*\*: higher crash rate than \*\*(kmalloc|subrange-hint)\*\*", answer)
    assert re.search(r"\*\*kmalloc\*\*: more hot-adds failed with -ENOMEM than \*\*altmap\*\*", answer)
    assert re.search(r"\*\*kmalloc\*\*: [\d.]+× more OOM kills than \*\*(altmap|subrange-hint)\*\*", md)
    assert "hot-adds failed with -EINVAL = 0" in md
    # survival first: where no altmap guest survived, its other metrics are not compared; elsewhere n counts
    # the survivors
    assert "- **altmap**: no guest survived when driver.name = xen" in answer
    assert "of 10 (survivors)" in md
    survival = md.split("## Survival")[1].split("## Findings")[0]
    assert "| driver.name=xen, onlining.delay_s=2 | 0 of 10 | 10 of 10 | 0 of 10 |" in survival


def test_report_changes_with_the_data(tmp_path):
    one = planted(tmp_path / "one", kmalloc_mean=6.0, altmap_mean=1.0)
    two = planted(tmp_path / "two", kmalloc_mean=1.0, altmap_mean=6.0)
    finish(one)
    finish(two)
    first = (one / "REPORT.md").read_text()
    second = (two / "REPORT.md").read_text()
    assert "**kmalloc**: " in first and "more OOM kills than **altmap**" in first
    assert "**altmap**: " in second and "more OOM kills than **kmalloc**" in second


def test_report_says_plainly_when_nothing_differs(tmp_path):
    root = planted(tmp_path / "same", kmalloc_mean=2.0, altmap_mean=2.0, seed=4)
    md_path, html_path = report(root)
    md = md_path.read_text()
    assert "No difference between levels of `memmap.strategy` is significant after Holm correction" in md
    assert "OOM kills: no difference between any two levels of `memmap.strategy` is significant after Holm" in md
    assert html_path.read_text().count("data:image/png;base64,") >= 1


def test_failed_runs_are_reported(tmp_path):
    import pandas as pd

    root = planted(tmp_path / "fails")
    runs = pd.read_csv(root / "runs.csv")
    runs["error"] = runs["error"].astype(object)
    runs.loc[:1, "status"] = "failed"
    runs.loc[:1, "error"] = "SimError: memmap write to unbacked page"
    runs.to_csv(root / "runs.csv", index=False)
    md = report(root)[0].read_text()
    assert "## Failed runs" in md and "memmap write to unbacked page" in md
    assert "40: 38 ok, 2 failed" in md
