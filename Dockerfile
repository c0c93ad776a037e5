# syntax=docker/dockerfile:1
# Likeness: one image for the web server, the workers and beat (the command differs).
# Not built or run on the development machines (no Docker engine there): kept
# consistent with config/settings.py and compose.yaml by reading.
#
# CPU image (web, default worker, beat):
#   docker build -t likeness .
# GPU worker image, on a CUDA runtime base:
#   docker build -t likeness-gpu --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- runtime base: Python 3.11 on the chosen base image ------------------------------
FROM ${BASE_IMAGE} AS runtime-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# CUDA images ship no Python 3.11: install it from the distribution (deadsnakes on Ubuntu 24.04).
RUN if ! command -v python3.11 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
        && add-apt-repository -y ppa:deadsnakes/ppa \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && apt-get purge -y software-properties-common gpg-agent && apt-get autoremove -y \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && ln -sf "$(command -v python3.11)" /usr/local/bin/likeness-python

# ---- builder: a virtual environment with the pinned dependencies ---------------------
FROM runtime-base AS builder
# Extra package index, e.g. https://download.pytorch.org/whl/cpu for a CPU-only torch.
ARG PIP_EXTRA_INDEX_URL=""
RUN likeness-python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Optional-dependency groups of pyproject to install too (space-separated): s3 = the S3 storage backend.
ARG EXTRAS="s3"
COPY pyproject.toml /build/pyproject.toml
RUN python -c "import os, tomllib; p = tomllib.load(open('/build/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in os.environ['EXTRAS'].split() for d in p['optional-dependencies'][e]]))" \
        > /build/requirements.txt \
    && pip install --upgrade pip \
    && pip install ${PIP_EXTRA_INDEX_URL:+--extra-index-url "$PIP_EXTRA_INDEX_URL"} -r /build/requirements.txt
# MediaPipe's face mesh and iris models (Apache-2.0), out of the mediapipe wheel, sha256-checked.
COPY personalization /build/personalization
RUN cd /build && python -m personalization fetch-face-mesh --dir /opt/face-mesh

# ---- final image: non-root, application code, collected static files ----------------
FROM runtime-base AS final
RUN groupadd --system --gid 10001 likeness \
    && useradd --system --uid 10001 --gid likeness --home-dir /app --shell /usr/sbin/nologin likeness \
    && mkdir -p /data/storage /app/var \
    && chown -R likeness:likeness /data /app/var
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/face-mesh /opt/face-mesh
ENV PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=config.settings \
    LIKENESS_FACE_MESH_DIR=/opt/face-mesh \
    LIKENESS_STORAGE_ROOT=/data/storage
WORKDIR /app
COPY --chown=likeness:likeness manage.py pyproject.toml ./
COPY --chown=likeness:likeness config ./config
COPY --chown=likeness:likeness tenancy ./tenancy
COPY --chown=likeness:likeness audit ./audit
COPY --chown=likeness:likeness consent ./consent
COPY --chown=likeness:likeness training ./training
COPY --chown=likeness:likeness editing ./editing
COPY --chown=likeness:likeness personalization ./personalization
COPY --chown=likeness:likeness templates ./templates
# Static files of the admin and the browsable API, for the reverse proxy to serve
# from /app/var/static (the dashboard itself needs none; compose shares them through a volume).
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput -v0 && chown -R likeness:likeness /app/var
USER likeness
VOLUME ["/data"]
EXPOSE 8000
# The web server (HTTP + WebSocket). Workers and beat override the command (compose.yaml).
# uvicorn in processes that each listen on their own socket (config/webserver.py). No proxy
# headers: uvicorn would take the client address from the left-most X-Forwarded-For entry, which
# the client writes; the application reads the header itself, trusting only the
# LIKENESS_TRUSTED_PROXIES entries on its right (tenancy/throttling.py).
CMD ["python", "-m", "config.webserver", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
