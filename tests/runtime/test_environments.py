"""The flow runtime: a base virtualenv with promptflow, and cached layers for flows' own requirements."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from django.conf import settings

from runtime.environments import (
    EnvironmentBuildError,
    ensure_flow_environment,
    environment_key,
    layer_requirements,
    needs_layer,
    normalise_requirements,
)

pytestmark = pytest.mark.integration


def test_it_ignores_comments_order_and_blank_lines():
    assert normalise_requirements("b==1\n# note\n\na>=2  # why\n") == "a>=2\nb==1"


def test_it_needs_no_layer_for_what_the_base_already_has():
    assert not needs_layer("")
    assert not needs_layer("promptflow-tools\n")
    assert not needs_layer("promptflow-core==1.18.5")
    assert not needs_layer("promptflow[azure]>=1.7.0\npromptflow\npromptflow-tools\npromptflow-core>=1.0\n")
    assert not needs_layer("httpx>=0.20\nPyYAML==6.0.4")
    assert needs_layer("python-slugify==8.0.4")
    assert needs_layer("httpx<0.20")
    assert needs_layer("httpx[http2]")


def test_it_leaves_promptflow_out_of_a_layer():
    """promptflow's examples list promptflow itself; the layer holds only the flow's own packages."""
    assert layer_requirements("promptflow[azure]>=1.7.0\npromptflow-tools\nbs4\n") == "bs4"


def test_it_names_an_environment_by_its_requirements():
    assert environment_key("") == environment_key("promptflow-tools")
    assert environment_key("bs4") == environment_key("promptflow[azure]>=1.7.0\npromptflow-tools\nbs4")
    assert environment_key("python-slugify==8.0.4") == environment_key("# x\npython-slugify==8.0.4\n")
    assert environment_key("python-slugify==8.0.4") != environment_key("python-slugify==8.0.3")


def test_it_turns_telemetry_off_before_promptflow_runs(flow_runtime, tmp_path):
    env = flow_runtime.process_env(tmp_path / "home")
    config = yaml.safe_load((Path(env["PF_HOME_DIRECTORY"]) / "pf.yaml").read_text())
    assert config["telemetry"] == {"enabled": "false"}
    assert env["PF_HOME_DIRECTORY"] == str(tmp_path / "home" / "pf-home")
    # Azure Monitor's exporter, loaded by promptflow's serving app, would call Azure for its settings.
    assert (
        env["APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED"] == env["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] == "true"
    )
    assert "DJANGO_SECRET_KEY" not in env and "DATABASE_URL" not in env


def test_it_runs_promptflow_in_the_base_runtime(flow_runtime, tmp_path):
    command, env = flow_runtime.flow_process(
        [str(flow_runtime.python), "-c", "import promptflow.core, promptflow.tools, httpx; print('ok')"],
        home=tmp_path / "home",
    )
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert completed.stdout.strip() == "ok", completed.stderr


def test_it_builds_a_layer_once_and_reuses_it(flow_runtime, tmp_path):
    root = Path(settings.FLOWDEPLOY_RUNTIME_DIR)
    first = ensure_flow_environment(root, "python-slugify==8.0.4\n")
    built_at = os.stat(first.path / ".complete").st_mtime
    second = ensure_flow_environment(root, "# the same, written differently\npython-slugify==8.0.4")
    assert second.path == first.path
    assert os.stat(second.path / ".complete").st_mtime == built_at
    command, env = second.flow_process(
        [str(second.python), "-c", "import slugify, promptflow.core; print(slugify.slugify('A B'))"],
        home=tmp_path / "home",
    )
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert completed.stdout.strip() == "a-b", completed.stderr


def test_it_fails_with_pips_message_for_a_requirement_that_cannot_install(flow_runtime):
    root = Path(settings.FLOWDEPLOY_RUNTIME_DIR)
    with pytest.raises(EnvironmentBuildError) as caught:
        ensure_flow_environment(root, "flowdeploy-no-such-package-for-tests==0.0.1\n")
    message = str(caught.value)
    assert message.startswith("pip could not install the requirements:")
    assert "flowdeploy-no-such-package-for-tests" in message
    assert not any(p.name.endswith(".building") for p in (root / "layers").iterdir())
