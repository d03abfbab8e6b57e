# streamlearn daemon and producer: `docker build -t streamlearn .`
# `docker run streamlearn run --help`; docker-compose.yml runs the whole stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs, so edits to tests or docs keep the layer cached.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY learners ./learners
COPY monitoring ./monitoring
RUN pip install . && rm -rf /build

# A fixed non-root uid; the state directory exists in the image so a fresh
# named volume mounted there inherits its ownership.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/streamlearn streamlearn \
    && mkdir -p /var/lib/streamlearn \
    && chown streamlearn:streamlearn /var/lib/streamlearn

USER streamlearn
WORKDIR /home/streamlearn
EXPOSE 9464

ENTRYPOINT ["streamlearn"]
CMD ["run"]
