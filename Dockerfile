# The worker image (also runs the Slack sandbox in the compose "sandbox" profile).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY starter ./starter
COPY sandbox ./sandbox
COPY config ./config
COPY worker.py ./
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "worker"]
