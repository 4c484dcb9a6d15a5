"""A deployment exported for Azure Machine Learning: the zip of endpoints/export.py, as a download."""

from __future__ import annotations

import tempfile

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from endpoints.views.common import get_deployment
from workspace.access import Action


@login_required
@require_GET
def export(request, endpoint: str, name: str) -> HttpResponse:
    """Needs READ_DATA (Contributor): the zip holds the flow's code and the deployment's environment variables."""
    deployment = get_deployment(request, endpoint, name, Action.READ_DATA)
    from endpoints import export as azure_export  # azure-ai-ml takes about a second to import

    archive = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it once sent)
    workspace = azure_export.workspace_info_for(deployment.endpoint.project)
    try:
        azure_export.write_zip(deployment, archive, workspace)
    except azure_export.ExportError as exc:
        archive.close()
        messages.error(request, f"The deployment could not be exported. {exc}")
        return redirect(deployment.get_absolute_url())
    archive.seek(0)
    filename = azure_export.export_filename(deployment)
    return FileResponse(archive, as_attachment=True, filename=filename, content_type="application/zip")
