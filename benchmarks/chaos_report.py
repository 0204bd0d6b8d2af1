"""Run the chaos suite (tests/chaos) and table what each scenario measured.

Each scenario appends its figures to the file named by ``MESHLITE_CHAOS_REPORT``;
this script points that variable at a temporary file, runs the suite with pytest,
and prints the table docs/chaos.md shows.

    .venv/bin/python benchmarks/chaos_report.py          # about 20 s

Exits with pytest's status when the suite fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = (
    ("scenario", "scenario", "{}"),
    ("requests", "requests", "{}"),
    ("success", "success_rate", "{:.1%}"),
    ("GET ok during fault", "fault_get_success_rate", "{:.1%}"),
    ("POST ok during fault", "fault_post_success_rate", "{:.1%}"),
    ("retries", "retries", "{}"),
    ("ejections", "ejections", "{}"),
    ("breaker opened", "breaker_opens", "{}"),
    ("recovery", "recovery_seconds", "{:.2f} s"),
    ("POSTs sent twice", "posts_sent_twice", "{}"),
)


def run_suite(report: Path) -> int:
    env = {**os.environ, "MESHLITE_CHAOS_REPORT": str(report)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "chaos")]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
             "|---" + "|---:" * (len(COLUMNS) - 1) + "|"]
    for row in rows:
        cells = [fmt.format(row[key]) for _, key, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "chaos.jsonl"
        status = run_suite(report)
        rows = [json.loads(line) for line in report.read_text().splitlines()
                ] if report.exists() else []
    print()
    print(table(rows))
    return status


if __name__ == "__main__":
    sys.exit(main())
