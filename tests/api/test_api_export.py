"""GET /api/v1/online-endpoints/<endpoint>/deployments/<name>/export: the deployment for Azure Machine Learning."""

import io
import zipfile

import pytest
from api_client import error
from export_support import WEB, deployment, flow_version

pytestmark = pytest.mark.django_db

EXPORT = "/online-endpoints/ep-web/deployments/blue/export"


@pytest.fixture
def blue(isolated_flow_dirs):
    return deployment(flow_version("web", WEB))


def test_it_answers_the_zip_as_an_attachment(contributor_api, blue):
    response = contributor_api.get(EXPORT)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="ep-web-blue-azureml.zip"'
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert {"model.yml", "endpoint.yml", "deployment.yml", "README.md", "environment/environment.yml"} <= set(names)
    assert "flow/flow.dag.yaml" in names


def test_it_needs_read_data(reader_api, blue):
    response = reader_api.get(EXPORT)
    assert response.status_code == 403
    assert "Contributor or Owner" in error(response)["message"]


def test_it_answers_404_for_a_deployment_that_does_not_exist(contributor_api, blue):
    response = contributor_api.get(EXPORT.replace("blue", "green"))
    assert response.status_code == 404
    assert error(response)["message"] == "Online endpoint ep-web has no deployment named 'green'."


def test_it_answers_409_when_the_flow_snapshot_is_missing(contributor_api, blue):
    blue.flow_version.snapshot_dir.rename(blue.flow_version.snapshot_dir.with_name("moved"))
    response = contributor_api.get(EXPORT)
    assert response.status_code == 409
    assert error(response) == {
        "code": "Conflict",
        "message": "The snapshot of flow web:1 is missing from the studio's disk.",
    }
