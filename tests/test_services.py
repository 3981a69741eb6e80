"""The suite's service switch (``BEACON_TEST_SERVICES``) and the once-per-run start of local services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services
from tests.conftest import ROOT


def test_local_is_the_default_and_never_asks_for_docker() -> None:
    def no_docker() -> str | None:
        raise AssertionError("the local mode must not look for Docker")

    assert services.services_mode({}, no_docker) == "local"
    assert services.services_mode({"BEACON_TEST_SERVICES": "LOCAL"}, no_docker) == "local"


def test_containers_are_chosen_only_when_a_docker_engine_answers() -> None:
    assert services.services_mode({"BEACON_TEST_SERVICES": "containers"}, lambda: None) == "containers"
    with pytest.raises(services.ServicesChoiceError, match="needs a Docker engine, but no engine here"):
        services.services_mode({"BEACON_TEST_SERVICES": "containers"}, lambda: "no engine here")


def test_an_unknown_mode_is_refused_naming_the_ones_that_exist() -> None:
    with pytest.raises(services.ServicesChoiceError, match="'docker' is not one of local, containers"):
        services.services_mode({"BEACON_TEST_SERVICES": "docker"}, lambda: None)


def test_asking_for_containers_without_docker_stops_the_run_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "BEACON_TEST_SERVICES": "containers", "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    env.pop(services.RUN_ENV, None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
         f"{__file__}::test_local_is_the_default_and_never_asks_for_docker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert f"needs a Docker engine, but no Docker engine answered at unix://{tmp_path}/no-docker.sock" in run.stderr
    assert "1 passed" not in run.stdout


def test_only_the_run_that_started_a_service_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(services.RUN_ENV, "run-a")
    services.ensure_local(tmp_path, "kafka", lambda: None)  # one already answered: not ours to stop
    assert not services.started_by_this_run(tmp_path, "kafka")
    services.ensure_local(tmp_path, "kafka", lambda: 4.2)  # started by run-a
    monkeypatch.setenv(services.RUN_ENV, "run-b")
    assert not services.started_by_this_run(tmp_path, "kafka")
    monkeypatch.setenv(services.RUN_ENV, "run-a")
    assert services.started_by_this_run(tmp_path, "kafka")
    assert not services.started_by_this_run(tmp_path, "kafka")  # said once
