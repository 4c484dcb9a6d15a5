"""Users with and without rights, their tokens, and a test client that speaks JSON with a bearer token."""

import pytest
from api_client import PASSWORD, Api

from api.models import PersonalAccessToken
from endpoints.models import Endpoint
from flows.models import Flow, FlowSource, FlowVersion


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("ops", password=PASSWORD, is_staff=True)


@pytest.fixture
def reader(django_user_model):
    """Signed up, no permission: may read everything but change nothing."""
    return django_user_model.objects.create_user("reader", password=PASSWORD)


@pytest.fixture
def api(client, staff) -> Api:
    return Api(client, PersonalAccessToken.issue(staff)[1])


@pytest.fixture
def reader_api(client, reader) -> Api:
    return Api(client, PersonalAccessToken.issue(reader)[1])


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
