"""Which borgflow an executor becomes after an update_agent (installs.py), and what pip installs."""

from __future__ import annotations

from pathlib import Path

from services.executor import borgs, installs
from services.executor.jobs.update_agent import requirement


def fake_install(root: Path, name: str) -> Path:
    bin_dir = root / name / "bin"
    bin_dir.mkdir(parents=True)
    for exe in ("borgflow", "python"):
        (bin_dir / exe).write_text("#!/bin/sh\n")
        (bin_dir / exe).chmod(0o755)
    return root / name


def test_a_package_name_is_pinned_to_the_version_and_a_path_or_url_is_taken_as_given() -> None:
    assert requirement("borgflow", "0.2.0") == "borgflow==0.2.0"
    assert requirement("borgflow", None) == "borgflow"
    assert requirement("/srv/wheels/borgflow-0.2.0-py3-none-any.whl", "0.2.0").endswith(".whl")
    assert requirement("git+https://example.org/borgflow.git", "0.2.0") == "git+https://example.org/borgflow.git"
    assert requirement("./borgflow", "0.2.0") == "./borgflow"


def test_an_executor_relaunches_only_into_an_installed_borgflow_it_is_not_running_from(tmp_path: Path) -> None:
    root = installs.agent_root(tmp_path, "web-1")
    assert installs.relaunch_target(root, "/usr/bin/python3") is None  # nothing installed
    first = fake_install(root, "0.2.0-job1")
    borgs.switch(root, first)
    exe = root / "current" / "bin" / "borgflow"
    assert installs.relaunch_target(root, "/usr/bin/python3") == exe
    # The relaunched one runs from the venv the link points at: no second relaunch.
    assert installs.relaunch_target(root, str(first / "bin" / "python")) is None
    # A later update moves the link: the one running from the old install relaunches again.
    second = fake_install(root, "0.3.0-job2")
    borgs.switch(root, second)
    assert installs.relaunch_target(root, str(first / "bin" / "python")) == exe
    (root / "current").unlink()  # going back: the original install runs again
    assert installs.relaunch_target(root, str(first / "bin" / "python")) is None
