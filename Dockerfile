# The image the docker sandbox backend (sandbox/docker_backend.py) runs candidates in: the project and its
# dependencies, nothing else. Containers run it with no network, a read-only root and an unprivileged uid.
#
#   docker build -t discover:latest .                                   # CPU JAX
#   docker build -t discover:cuda --build-arg JAX_EXTRA=cuda12 .        # JAX for CUDA 12 (NVIDIA container toolkit)
#
# Then set `sandbox: {backend: docker, docker_image: discover:latest}` in the experiment config.
FROM python:3.11-slim

ARG JAX_EXTRA=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md /tmp/discover/
COPY engine /tmp/discover/engine
COPY islands /tmp/discover/islands
COPY sandbox /tmp/discover/sandbox
COPY tasks /tmp/discover/tasks

# The CUDA build keeps the JAX version `pip install .` chose, adding only its CUDA plugin and libraries.
RUN pip install /tmp/discover \
    && if [ -n "$JAX_EXTRA" ]; then \
         pip install "jax[${JAX_EXTRA}]==$(python -c 'import jax; print(jax.__version__)')"; \
       fi \
    && rm -rf /tmp/discover \
    && python -c "import jax, numpy, optax, sandbox.docker_backend"

WORKDIR /scratch
USER 65534:65534
CMD ["python", "-c", "import jax, sandbox; print('discover sandbox image, jax', jax.__version__)"]
