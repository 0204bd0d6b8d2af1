"""docs/adding-a-policy.md is the whole recipe: following only its steps, on a copy of the
package, adds a policy that is exported, counted in the metrics and accepted by the
registry's checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from _docblocks import ROOT, blocks_of

PAGE = ROOT / "docs" / "adding-a-policy.md"

_USE = """
import meshlite as ml
from meshlite.observability._feed import EVENT_METRICS

assert "Quota" in ml.__all__ and "QuotaUsedUp" in ml.__all__
metrics = ml.Metrics()
quota = ml.Quota(calls=2)
pipeline = ml.Pipeline(metrics, quota)
metrics.watch(pipeline)
seen = []
quota.add_hook(seen.append)
answers = [pipeline.call(lambda: "ok") for _ in range(2)]
try:
    pipeline.call(lambda: "ok")
except ml.QuotaExceededError as error:
    assert isinstance(error, ml.RejectedError) and error.policy == "quota"
else:
    raise AssertionError("the third call was admitted")
assert answers == ["ok", "ok"] and [type(e) for e in seen] == [ml.QuotaUsedUp]
assert EVENT_METRICS["meshlite_quota_used_up_total"][0] == "counter"
counted = {f.name: f for f in metrics.collect()}["meshlite_quota_used_up_total"]
assert [s.value for s in counted.samples] == [1.0]
try:
    ml.Quota(calls=0)
except ml.ConfigError as error:
    assert "calls" in str(error)
else:
    raise AssertionError("calls=0 was accepted")
print("quota works")
"""


def _follow_the_page(package: Path) -> list[str]:
    """Apply each block of the page where its marker says; return what was done."""
    done = []
    for block in blocks_of(PAGE):
        reason = block.not_run or ""
        match = re.match(r"(creates|appended to|inserted in the if TYPE_CHECKING: block of) "
                         r"(meshlite/\S+)", reason)
        if match is None:
            continue
        action, name = match.groups()
        target = package.parent / name
        if action == "creates":
            assert not target.exists()
            target.write_text(block.text, encoding="utf-8")
        elif action == "appended to":
            target.write_text(target.read_text(encoding="utf-8") + block.text,
                              encoding="utf-8")
        else:
            source = target.read_text(encoding="utf-8")
            head = "\nif TYPE_CHECKING:\n"
            lines = "".join(f"    {line}\n" for line in block.text.splitlines())
            target.write_text(source.replace(head, head + lines, 1), encoding="utf-8")
        done.append(f"{action} {name}")
    return done


def test_the_page_is_all_a_new_policy_needs(tmp_path: Path) -> None:
    package = tmp_path / "meshlite"
    shutil.copytree(ROOT / "meshlite", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    tests = tmp_path / "tests"
    (tests / "policies").mkdir(parents=True)
    for name in ("policies/test_registry.py", "test_exports.py", "_docblocks.py"):
        shutil.copy(ROOT / "tests" / name, tests / name)
    assert _follow_the_page(package) == [
        "creates meshlite/policies/_quota.py",
        "appended to meshlite/policies/_registry.py",
        "inserted in the if TYPE_CHECKING: block of meshlite/__init__.py",
    ]
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    used = subprocess.run([sys.executable, "-c", _USE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == "quota works"
    checked = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "tests/policies/test_registry.py", "tests/test_exports.py",
         "-k", "registry or registered or exported or declared_once"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert " passed" in checked.stdout
