# The Model Canary Operator's image; the Helm chart runs it by default and
# drill Jobs run it too. Build with:
#   docker build -t ghcr.io/modelcanary/modelcanary:0.1.0 .
#
# The base is pinned by digest so a rebuild gets the same bytes; bump the tag
# and the digest together, deliberately.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv copies cleanly into the runtime stage, without pip or build tools.
RUN python -m venv /opt/modelcanary
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Not editable: the runtime stage has no source tree. Runtime dependencies
# are pinned exactly in pyproject.toml.
RUN /opt/modelcanary/bin/pip install --no-compile . \
    && /opt/modelcanary/bin/python -m compileall -q /opt/modelcanary

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modelcanary" \
      org.opencontainers.image.source="https://github.com/modelcanary/modelcanary" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/modelcanary/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/modelcanary /opt/modelcanary
# 65532 is the conventional "nonroot" uid; the chart's securityContext
# enforces the same ids, and a numeric USER lets runAsNonRoot verify it.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["modelcanary"]
CMD ["run"]
