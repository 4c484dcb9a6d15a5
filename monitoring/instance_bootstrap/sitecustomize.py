"""Set up span export in a traced instance: copied into the instance's home and put on its PYTHONPATH by the
studio (monitoring/tracing.py), so Python runs it first in every process of the instance. Runs in the flow
runtime, never in the studio.

Why not promptflow's own OTLP exporter: promptflow-core 1.18.5 subclasses OpenTelemetry's OTLPSpanExporter
with an `_export(self, serialized_data)` that opentelemetry-exporter-otlp-proto-http 1.35 and later call with a
timeout too, so every export fails with a TypeError ("takes 2 positional arguments but 3 were given"). The
studio turns promptflow's built-in trace exporters off (PF_BUILTIN_TRACE_EXPORTERS_DISABLE=true, promptflow's own
switch for a custom span processor) and this sets the tracer provider promptflow's spans go to: OpenTelemetry's
own OTLP/HTTP exporter, configured by the standard OTEL_EXPORTER_OTLP_TRACES_* variables, and with
APPLICATIONINSIGHTS_CONNECTION_STRING set, Azure Monitor's exporter as well. The batch processors restart
their thread in each forked gunicorn worker (OpenTelemetry registers an at-fork hook).
"""

import logging
import os


def _setup() -> None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        logging.getLogger("flowdeploy.tracing").warning("Tracing is off: %s", error)
        return
    resource = Resource(
        attributes={SERVICE_NAME: "promptflow", "flowdeploy.instance": os.environ.get("FLOWDEPLOY_INSTANCE_ID", "")}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    connection_string = os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if connection_string:
        try:
            from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter

            exporter = AzureMonitorTraceExporter(connection_string=connection_string)
            provider.add_span_processor(BatchSpanProcessor(exporter))
        except Exception as error:  # a bad connection string must not stop the instance
            logging.getLogger("flowdeploy.tracing").warning("No export to Azure Monitor: %s", error)
    trace.set_tracer_provider(provider)


_setup()
