"""The top bar's project switcher: shown to who sees more than one project; new flows go to the chosen one."""

import pytest

from workspace.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_switches_the_current_project_from_the_top_bar(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server.url}/flows/import/")
    assert page.locator("#project-switcher").count() == 0  # one project: no switcher, only its name
    assert page.locator("#import-project").inner_text() == "into project default"
    Project.objects.create(name="team-a")
    page.reload()
    page.locator("#project-choice").select_option(label="team-a")
    page.wait_for_selector("text=You are working in project team-a.")
    assert page.url == f"{live_server.url}/flows/import/"
    assert page.locator("#import-project").inner_text() == "into project team-a"
    assert page.locator("#project-choice").input_value() == str(Project.objects.get(name="team-a").pk)
