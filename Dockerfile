# VPO in a container: `vpo serve --watch /library` with Debian's ffmpeg and mkvtoolnix.
# docker-compose.yml builds it and runs it next to Prometheus and Grafana (README.md,
# "Prometheus and Grafana").
#
# The base is pinned by its exact tag and by the digest of that tag's multi-architecture
# index (the digest cited for python:3.11.14-slim-bookworm in public Dockerfiles; it could
# not be checked against the registry from the machine this was written on). To move to a
# newer Python patch release, change both together.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# The container's user owns what VPO writes in the library (it rewrites files in place
# and writes temporary files beside them), so give it the library owner's ids when they
# are not 1000: `VPO_UID=$(id -u) VPO_GID=$(id -g) docker compose build` (docker-compose.yml
# passes them), or `docker build --build-arg VPO_UID=… --build-arg VPO_GID=… .`
ARG VPO_UID=1000
ARG VPO_GID=1000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The tools VPO drives, from Debian (the same packages scripts/setup.sh installs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg mkvtoolnix \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# VPO itself, installed from the source (not editable), with the OTLP exporter so the
# compose file's `tracing` profile needs no other image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[otlp]" \
    && rm -rf /src

RUN groupadd --gid "${VPO_GID}" vpo \
    && useradd --uid "${VPO_UID}" --gid vpo --create-home --home-dir /home/vpo \
        --shell /usr/sbin/nologin vpo \
    && mkdir -p /data /library /config \
    && chown vpo:vpo /data /library

# /data: the database (a named volume keeps it); /library: the videos VPO keeps
# conforming; /config: the policy (mounted read-only).
VOLUME ["/data", "/library", "/config"]
ENV VPO_DB=/data/library.db
WORKDIR /home/vpo
USER vpo

EXPOSE 8321

# No curl in the slim image: Python's urllib asks /healthz (503, or no answer, fails it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8321/healthz', timeout=4)"]

CMD ["vpo", "serve", "--host", "0.0.0.0", "--port", "8321", "--watch", "/library", "--policy", "/config/policy.yaml"]
