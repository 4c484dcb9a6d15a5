"""The services' rules that every caller (wizard, live check, Scale, API, CLI) shares: one instance-count
rule, endpoint names unique whatever their case, every deployment setting's problem at once."""

import pytest

from django.core.exceptions import ValidationError

from endpoints import services

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value", [0, -1, 2.5, "2.5", "", None, "two", True, 21, 100, "0"])
def test_it_refuses_every_instance_count_outside_1_to_the_maximum_with_one_message(value, settings):
    settings.FLOWDEPLOY_MAX_INSTANCES = 20
    with pytest.raises(ValidationError) as caught:
        services.clean_instance_count(value)
    assert caught.value.messages == ["Instance count must be a whole number from 1 to 20."]


@pytest.mark.parametrize(("value", "count"), [(1, 1), ("3", 3), (" 20 ", 20), (4.0, 4)])
def test_it_accepts_a_whole_instance_count_in_range(value, count, settings):
    settings.FLOWDEPLOY_MAX_INSTANCES = 20
    assert services.clean_instance_count(value) == count


def test_it_uses_the_same_rule_in_the_deployment_settings(import_flow):
    version = import_flow("web-classification-offline")
    for value in (0, 2.5, ""):
        with pytest.raises(ValidationError) as caught:
            services.clean_deployment_settings(version, {"instance_count": value})
        assert caught.value.message_dict == {"instance_count": ["Instance count must be a whole number from 1 to 20."]}


def test_it_reports_every_bad_deployment_setting_at_once(import_flow):
    version = import_flow("web-classification-offline")
    with pytest.raises(ValidationError) as caught:
        services.clean_deployment_settings(
            version,
            {
                "vm_size": "Standard_Huge",
                "instance_count": 0,
                "request_timeout_ms": 10,
                "max_concurrent_requests_per_instance": 2.5,
                "selected_outputs": ["nope"],
                "tags": "not tags",
            },
        )
    assert set(caught.value.message_dict) == {
        "vm_size",
        "instance_count",
        "request_timeout_ms",
        "max_concurrent_requests_per_instance",
        "selected_outputs",
        "tags",
    }
    assert caught.value.message_dict["max_concurrent_requests_per_instance"] == [
        "Max concurrent requests per instance must be a whole number."
    ]


def test_it_refuses_an_endpoint_name_that_differs_only_in_case(redis_url):
    services.create_endpoint("My-Ep")
    with pytest.raises(ValidationError) as caught:
        services.create_endpoint("my-ep")
    assert caught.value.message_dict == {
        "name": ["Endpoint name my-ep is already taken by endpoint My-Ep: endpoint names are case-insensitive."]
    }
    with pytest.raises(ValidationError) as caught:
        services.create_endpoint("My-Ep")
    assert caught.value.message_dict == {"name": ["Endpoint name My-Ep is already taken."]}


def test_it_reports_every_traffic_problem_with_the_deployment_it_is_about(
    import_flow, django_capture_on_commit_callbacks
):
    version = import_flow("web-classification-offline")
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-rules")
        services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS1_v2")
        services.create_or_update_deployment(endpoint, "green", version, vm_size="Standard_DS1_v2")
    with pytest.raises(ValidationError) as caught:
        services.clean_traffic(endpoint, {"blue": "lots", "green": 2.5, "red": 10}, {"green": 60})
    errors = caught.value.error_dict
    about = [(e.params or {}).get("deployment") for e in errors["traffic"]]
    assert about == ["blue", "green", None]
    assert caught.value.message_dict["traffic"] == [
        "Traffic for blue must be a whole number of percent, not 'lots'.",
        "Traffic for green must be a whole number of percent, not 2.5.",
        "Endpoint ep-rules has no deployment named 'red'.",
    ]
    assert caught.value.message_dict["mirror_traffic"] == ["Mirror traffic for green is at most 50%."]
    assert errors["mirror_traffic"][0].params == {"deployment": "green"}
