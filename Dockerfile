# Flowdeploy: one image for the studio, the Celery worker and beat (docker-compose.yml picks the command).
#
#   docker build -t flowdeploy .
#   docker run -p 8000:8000 -v flowdeploy-data:/data -e DJANGO_SECRET_KEY=... -e FLOWDEPLOY_SECRET_KEY=... flowdeploy
#
# Flows do not run in this Python: the app builds the flow runtime, a separate virtualenv made from
# runtime/requirements.txt, with `python -m venv` on first use and keeps it under /data/runtime. That
# needs nothing beyond what python:3.11-slim has (no compiler: every pinned package ships a wheel).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so that editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself: the packages (and any console entry points) are installed with pip, and the
# code runs from /app, which also holds templates/, static/ and samples/. PYTHONPATH puts /app first so
# that `celery -A config` (which, unlike uvicorn and manage.py, does not add the working directory to
# the import path) loads the same files.
COPY . .
RUN pip install --no-cache-dir . && rm -rf build *.egg-info

ENV PYTHONPATH=/app \
    FLOWDEPLOY_DATA_DIR=/data \
    FLOWDEPLOY_RUNTIME_DIR=/data/runtime

# A non-root user owning /data, so a fresh named volume mounted there is writable (Docker copies the
# ownership of the image's /data into an empty volume).
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin flowdeploy \
    && mkdir -p /data/runtime \
    && chown -R flowdeploy:flowdeploy /data
USER flowdeploy

EXPOSE 8000

CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000"]
