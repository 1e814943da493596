"""`crowdtrain demo` as users run it: a subprocess, the whole market on embedded defaults."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_market_end_to_end() -> None:
    r = subprocess.run([sys.executable, "-m", "crowdtrain.cli", "demo", "--challenge-window", "5", "--timeout", "300"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = r.stdout
    assert r.returncode == 0, out[-6000:]
    assert "demo complete" in out and "all processes stopped" in out, out[-3000:]
    assert "Market" in out and "1,000,000" in out  # the deployment and the funded dev accounts
    assert re.search(r"job 1 posted", out) and "workers claimed" in out, out[-3000:]
    # both workers were paid for what they did: 4 units between them, 1 CTT each (tiny-mlp.toml pays
    # 10**18 base units of an 18-decimal token per unit)
    rows = re.findall(r"worker-(\d)\s+│\s+\S+\s+│\s+(\d+)\s+│\s+([\d.,]+) CTT\s+│\s+(\d+)", out)
    assert len(rows) == 2, out[-3000:]
    assert sum(int(acc) for _, acc, _, _ in rows) == 4
    assert all(Decimal(earned) == int(acc) for _, acc, earned, _ in rows), rows
    assert len(re.findall(r"worker-\d claim tx 0x[0-9a-fA-F]{64}", out)) == 4
    # the training loss falls and the owner holds the model and report
    m = re.search(r"training loss (\d+\.\d+) -> (\d+\.\d+)", out)
    assert m and float(m.group(2)) < float(m.group(1)), out[-3000:]
    model = Path(re.search(r"model: (\S+)", out).group(1))  # type: ignore[union-attr]
    report = Path(re.search(r"report: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert model.stat().st_size > 0 and report.stat().st_size > 0
    assert "owner refund: 0 CTT (closeJob tx 0x" in out
