"""What package_install makes of apt-get: its command line, which lines are errors, and its
failures as kinds with hints. Pure; tests/e2e/test_installing_packages.py installs for real."""

from __future__ import annotations

from services.executor.jobs.package_install import AptRun, failure, install_command


def test_packages_come_after_the_end_of_options() -> None:
    argv = install_command(["sl", "cowsay"])
    assert argv[:4] == ["apt-get", "install", "-y", "--no-install-recommends"]
    assert argv[-3:] == ["--", "sl", "cowsay"]


def test_lines_are_read_for_levels_and_what_was_set_up() -> None:
    run = AptRun()
    assert run.read("Setting up sl (5.02-1+b1) ...") == "info"
    assert run.read("W: Some index files failed to download.") == "warning"
    assert run.read("E: Unable to locate package nosuch") == "error"
    assert (run.installed, run.unknown, run.errors) == (["sl"], ["nosuch"], ["Unable to locate package nosuch"])


def test_an_unknown_package_a_network_failure_and_the_rest_are_told_apart() -> None:
    unknown = AptRun()
    unknown.read("E: Unable to locate package nosuch")
    kind, message, hint = failure(100, unknown, ["nosuch"], "a1")
    assert kind == "package_not_found" and "nosuch" in hint and "a1" in hint
    assert message == "apt-get install nosuch failed: Unable to locate package nosuch"

    offline = AptRun()
    offline.read("E: Failed to fetch http://deb.debian.org/debian/pool/main/s/sl/sl.deb  Temporary failure resolving")
    assert failure(100, offline, ["sl"], "a1")[0] == "connection"

    broken = AptRun()
    broken.read("E: Sub-process /usr/bin/dpkg returned an error code (1)")
    kind, _, hint = failure(100, broken, ["sl"], "a1")
    assert kind == "install_failed" and "job log" in hint
