# Callcard: multi-stage, so the compiler that llama-cpp-python needs stays out of the final image.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
# A portable llama.cpp build: the image may run on a different CPU than the one that built it.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 callcard
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=1000:1000 app.py ./
COPY --chown=1000:1000 backend ./backend
COPY --chown=1000:1000 ui ./ui
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    CALLCARD_DATA_DIR=/data
RUN mkdir -p /data && chown 1000:1000 /data
VOLUME ["/data"]
USER 1000
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:7860/healthz || exit 1
CMD ["python", "app.py"]
