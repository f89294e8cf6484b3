# The serving API image: always the registry's Production model (serving/).
# Build:  make image        Try it against a local tracking server:  make image-test
# Two stages: dependencies are installed (wheels only) into a virtual environment in the
# first; the final image gets that environment and the package, no pip cache, no compilers.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY serving/requirements.txt ./requirements.txt
COPY constraints.txt ./constraints.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: \
       -r requirements.txt -c constraints.txt \
    && /opt/venv/bin/pip uninstall --yes pip \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVING_HOST=0.0.0.0 \
    SERVING_PORT=8000 \
    MODEL_ALIAS=production \
    PREDICTION_LOG=/home/serving/predictions \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
# LightGBM's library links OpenMP's runtime, which the slim base lacks (scikit-learn and
# xgboost-cpu bundle their own). Debian's current libgomp1, whatever the base's release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/serving \
    --shell /usr/sbin/nologin serving
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY modelio/ ./modelio/
COPY serving/ ./serving/
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-m", "serving.healthcheck"]
CMD ["python", "-m", "serving"]
