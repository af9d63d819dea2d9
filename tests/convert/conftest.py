"""Fixtures for the conversion tests: tiny random HF checkpoints (see hf_tiny.py) and the parity table."""

from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from hf_tiny import FAMILIES, build_hf_model, save


@pytest.fixture
def hf_checkpoint(tmp_path):
    """A function: family -> (folder with the saved tiny HF model, the model itself)."""

    def make(family: str, folder: str = "hf") -> Tuple[Path, Any]:
        model = build_hf_model(family)
        path = tmp_path / folder
        save(model, path, FAMILIES[family][3])
        return path, model

    return make


REPORT_KEY = pytest.StashKey[Dict[str, Dict[str, float]]]()


@pytest.fixture(scope="session")
def parity_report(request) -> Dict[str, Dict[str, float]]:
    """family -> measured max abs logit differences; printed at the end of the session."""
    report: Dict[str, Dict[str, float]] = {}
    request.config.stash[REPORT_KEY] = report
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = config.stash.get(REPORT_KEY, None)
    if not report:
        return
    terminalreporter.section("HF <-> LitGPT logit parity (max abs diff)")
    terminalreporter.write_line(f"{'family':<14} {'HF class':<22} {'HF->lit':>10} {'lit->HF':>10} {'lit->HF*':>10}")
    for family, row in report.items():
        terminalreporter.write_line(
            f"{family:<14} {row['class']:<22} {row['to_lit']:>10.2e} {row['to_hf']:>10.2e} {row['to_hf_rule']:>10.2e}"
        )
    terminalreporter.write_line("lit->HF* : exported without the source config.json (class picked from the Config alone)")
