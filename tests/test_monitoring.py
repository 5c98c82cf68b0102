"""The alert rules load, each alert is unit-tested with promtool (firing when it should,
quiet when it should not), and each has its section in docs/runbook.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is needed: deploy/local/ensure-package.sh promtool prometheus"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120,
                          cwd=MONITORING)


def alerts() -> set[str]:
    rules = yaml.safe_load((MONITORING / "rules.yaml").read_text())
    return {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}


def test_the_rules_load() -> None:
    checked = promtool("check", "rules", "rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = promtool("test", "rules", "rules.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((MONITORING / "rules.test.yaml").read_text())["tests"]
    covered = {t["alertname"] for case in cases for t in case.get("alert_rule_test", [])
               if t.get("exp_alerts")}
    assert alerts() <= covered, f"alerts without a firing test: {alerts() - covered}"


def test_every_alert_has_a_runbook_section_that_its_annotation_points_to() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = set(re.findall(r"^## (\w+)$", runbook, re.M))
    assert alerts() <= sections, f"alerts without a runbook section: {alerts() - sections}"
    rules = yaml.safe_load((MONITORING / "rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["annotations"]["runbook"] == \
                    f"docs/runbook.md#{rule['alert'].lower()}", rule["alert"]
