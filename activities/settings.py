"""Settings from the environment (pydantic-settings), shared by the worker and starters."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.models import TASK_QUEUE_DEFAULT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = TASK_QUEUE_DEFAULT
    temporal_ui_port: int = 8233

    # Default: the local Slack sandbox that `incident dev` starts. Real Slack:
    # SLACK_API_URL=https://slack.com/api/ and a real SLACK_BOT_TOKEN.
    slack_api_url: str = "http://127.0.0.1:8901/api/"
    slack_bot_token: str = "xoxb-sandbox-token"
    slack_signing_secret: str = "sandbox-signing-secret"
    slack_sandbox_port: int = 8901

    incident_policy: str | None = None  # path to a policy YAML; default config/policy.yaml
    incident_data_dir: str = ".data"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
