# One image for every nurture service: web, scheduler, migrate.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first, from the lock file, so code edits do not reinstall them.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
# src/nurture/scheduler is a relative symlink to the top-level scheduler/ service.
COPY scheduler ./scheduler
RUN pip install --no-deps . && useradd --create-home --uid 10001 nurture
COPY sequences ./sequences
COPY templates ./templates
USER nurture
ENV NURTURE_SEQUENCES_DIR=/app/sequences NURTURE_TEMPLATES_DIR=/app/templates
EXPOSE 8000
CMD ["nurture", "--help"]
