# TRT: one image for `trt migrate` (the release step) and `trt run` (the service).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first (the lock changes less often than the code): exactly the lock, hashes checked.
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv pip install --system --no-cache --require-hashes -r requirements.lock

COPY src ./src
RUN uv pip install --system --no-cache --no-deps . && useradd --create-home trt
USER trt

# The PaaS sets PORT; TRT listens on all interfaces inside the container.
ENV HTTP_HOST=0.0.0.0 LOG_FORMAT=json
EXPOSE 8080
# SIGTERM reaches trt directly (exec form): it stops intake, drains, releases the lease, exits 0.
STOPSIGNAL SIGTERM
CMD ["trt", "run"]
