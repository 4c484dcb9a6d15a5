"""`flowdeploy export ENDPOINT DEPLOYMENT [-o FILE]`: the deployment for Azure Machine Learning, as a zip."""

import zipfile

import pytest
from export_support import WEB, deployment, flow_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def blue(cli, isolated_flow_dirs):
    return deployment(flow_version("web", WEB))


def test_it_writes_the_zip_named_after_the_deployment(cli, blue, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "ep-web", "blue")
    assert result.code == 0, result.err
    written = tmp_path / "ep-web-blue-azureml.zip"
    assert result.out.startswith(f"Wrote ep-web-blue-azureml.zip ({written.stat().st_size:,} bytes)")
    assert "README.md" in zipfile.ZipFile(written).namelist()


def test_it_writes_where_output_says(cli, blue, tmp_path):
    target = tmp_path / "out" / "blue.zip"
    target.parent.mkdir()
    result = cli("export", "ep-web", "blue", "-o", target)
    assert result.code == 0, result.err
    assert "deployment.yml" in zipfile.ZipFile(target).namelist()


def test_it_says_why_the_studio_refused(cli, blue, tmp_path):
    result = cli("export", "ep-web", "green", "-o", tmp_path / "green.zip")
    assert result.code == 1
    assert result.err.strip() == "Online endpoint ep-web has no deployment named 'green'."
    assert not (tmp_path / "green.zip").exists()
