"""Users and their roles in the default project, their tokens, and a test client that speaks JSON with a
bearer token."""

import pytest
from api_client import PASSWORD, Api, member

from api.models import PersonalAccessToken
from endpoints.models import Endpoint
from flows.models import Flow, FlowSource, FlowVersion
from workspace.models import ProjectRole


@pytest.fixture
def staff(django_user_model):
    """Owner of the default project (is_staff no longer grants anything in the API)."""
    return member(django_user_model.objects.create_user("ops", password=PASSWORD, is_staff=True), ProjectRole.OWNER)


@pytest.fixture
def reader(django_user_model):
    """Reader of the default project: may look and test but change nothing."""
    return member(django_user_model.objects.create_user("reader", password=PASSWORD), ProjectRole.READER)


@pytest.fixture
def contributor(django_user_model):
    return member(django_user_model.objects.create_user("dev", password=PASSWORD), ProjectRole.CONTRIBUTOR)


@pytest.fixture
def api(client, staff) -> Api:
    return Api(client, PersonalAccessToken.issue(staff)[1])


@pytest.fixture
def reader_api(client, reader) -> Api:
    return Api(client, PersonalAccessToken.issue(reader)[1])


@pytest.fixture
def contributor_api(client, contributor) -> Api:
    return Api(client, PersonalAccessToken.issue(contributor)[1])


@pytest.fixture
def admin_api(client, admin_user) -> Api:
    """A superuser's: Owner of every project, and the only one who may import a folder from the server."""
    return Api(client, PersonalAccessToken.issue(admin_user)[1])


@pytest.fixture
def anonymous_api(client) -> Api:
    return Api(client, None)


@pytest.fixture
def flow_version(db):
    """A flow version row as the importer leaves it (the importer itself is tested in tests/flows)."""

    def make(name: str = "web", outputs=("category", "evidence")) -> FlowVersion:
        flow, _ = Flow.objects.get_or_create(name=name)
        latest = flow.versions.order_by("-version").first()
        return FlowVersion.objects.create(
            flow=flow,
            version=(latest.version if latest else 0) + 1,
            content_hash=f"{name}-hash",
            source=FlowSource.FOLDER,
            inputs={"url": {"type": "string"}},
            outputs={output: {"type": "string"} for output in outputs},
            nodes=[{"name": "classify", "type": "python"}],
            connections=[],
        )

    return make


@pytest.fixture
def endpoint(db):
    from endpoints import services

    def make(name: str = "ep-one", **kwargs) -> Endpoint:
        return services.create_endpoint(name, **kwargs)

    return make
