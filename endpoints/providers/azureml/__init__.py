"""The azureml provider: a deployment becomes an Azure Machine Learning managed online endpoint and deployment.

What is sent to Azure (model, environment, endpoint, deployment) is built by artifacts.py, with no network, so
the provider and the export (endpoints/export.py) describe a deployment the same way.
"""

# Azure's ceiling for a managed online deployment's request timeout: what it is given, and what the studio waits.
AZURE_MAX_REQUEST_TIMEOUT_MS = 300_000
