"""Settings from the environment (pydantic-settings), shared by the worker and starters."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.models import TASK_QUEUE_DEFAULT

# What the paging sandboxes accept by default, and the worker sends (sandbox/pagerduty.py, sandbox/opsgenie.py).
PAGERDUTY_SANDBOX_ROUTING_KEY = "R0UTINGKEY" + "0" * 18 + "DEV1"  # 32 characters, as an integration key
OPSGENIE_SANDBOX_API_KEY = "sandbox-genie-key"
# What `incident dev` has its paging sandboxes sign webhooks with, and its receiver check. Not the
# settings' defaults: a receiver nobody configured trusts no webhook (this string is public).
PAGERDUTY_SANDBOX_WEBHOOK_SECRET = "sandbox-pagerduty-webhook-secret"
OPSGENIE_SANDBOX_WEBHOOK_TOKEN = "sandbox-opsgenie-webhook-token"

# The local stack's ports: the defaults of these settings, of `incident dev` and of each part
# run alone (the sandboxes, stand-ins of other systems, keep their own).
TEMPORAL_PORT = 7233
TEMPORAL_UI_PORT = 8233
SLACK_SANDBOX_PORT = 8901
SERVICENOW_SANDBOX_PORT = 8902
PAGERDUTY_SANDBOX_PORT = 8903
OPSGENIE_SANDBOX_PORT = 8904
SMTP_SANDBOX_HTTP_PORT = 8905  # the SMTP sandbox's page and control API
SMTP_SANDBOX_PORT = 8925  # the SMTP sandbox's SMTP listener
JIRA_SANDBOX_PORT = 8906
ALERT_RECEIVER_PORT = 8000
SLACK_APP_PORT = 3000
STATUS_PAGE_PORT = 8080
WORKER_METRICS_PORT = 9464  # `incident dev`'s worker serves /metrics here (else on a free port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    temporal_address: str = f"127.0.0.1:{TEMPORAL_PORT}"
    temporal_namespace: str = "default"
    temporal_task_queue: str = TASK_QUEUE_DEFAULT
    temporal_ui_port: int = TEMPORAL_UI_PORT
    # Where people open the Temporal UI (the war room's bookmark); empty: http://localhost:<ui port>.
    temporal_ui_url: str = ""

    def incident_ui_url(self, workflow_id: str) -> str:
        """The incident's page in the Temporal UI."""
        base = (self.temporal_ui_url or f"http://localhost:{self.temporal_ui_port}").rstrip("/")
        return f"{base}/namespaces/{quote(self.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"

    # Default: the local Slack sandbox that `incident dev` starts. Real Slack:
    # SLACK_API_URL=https://slack.com/api/ and a real SLACK_BOT_TOKEN.
    slack_api_url: str = f"http://127.0.0.1:{SLACK_SANDBOX_PORT}/api/"
    slack_bot_token: str = "xoxb-sandbox-token"
    slack_signing_secret: str = "sandbox-signing-secret"
    slack_sandbox_port: int = SLACK_SANDBOX_PORT

    # The Slack handler (starter/slack_app.py): HTTP at /slack/events, or Socket Mode
    # when SLACK_APP_TOKEN (xapp-...) is set.
    slack_app_port: int = SLACK_APP_PORT
    slack_app_token: str | None = None

    # The alert receivers (starter/alerts.py). A token, when set, is required as
    # "Authorization: Bearer <token>" on every alert.
    alert_receiver_port: int = ALERT_RECEIVER_PORT
    alert_receiver_token: str | None = None

    # The status page (starter/status_page.py): read-only, what the communications lead published.
    status_page_host: str = "127.0.0.1"
    status_page_port: int = STATUS_PAGE_PORT
    status_page_title: str = "Service status"

    # Which implementation the worker uses for each outside system (activities/backends.py).
    # TICKET_BACKEND: one name, or several comma separated (the first is the default, the others
    # there for policies whose tickets.system names them), or "off". Unset: servicenow when
    # SERVICENOW_URL is set and jira when JIRA_URL is set, in that order; neither: off.
    chat_backend: str = "slack"
    ticket_backend: str = ""
    device_backend: str = "pyats"

    # ServiceNow (activities/tickets/servicenow.py). No SERVICENOW_URL: tickets are off.
    # Credentials: SERVICENOW_TOKEN (OAuth bearer) or SERVICENOW_USER/PASSWORD (basic).
    servicenow_url: str | None = None
    servicenow_user: str | None = None
    servicenow_password: str | None = None
    servicenow_token: str | None = None
    servicenow_assignment_group: str = ""
    servicenow_timeout: float = 10.0
    servicenow_sandbox_port: int = SERVICENOW_SANDBOX_PORT

    # Jira Cloud (activities/tickets/jira.py), REST API v3. JIRA_URL: the site,
    # https://<site>.atlassian.net; JIRA_EMAIL and JIRA_API_TOKEN: an Atlassian account and one of
    # its API tokens (basic auth); JIRA_PROJECT: the project key incidents are filed in.
    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: str | None = None
    jira_project: str = ""
    jira_issue_type: str = "Task"  # the incident's issue
    jira_action_item_type: str = "Task"  # an action item's issue
    jira_link_type: str = "Relates"  # how an action item is linked to its incident's issue
    jira_timeout: float = 10.0
    jira_sandbox_port: int = JIRA_SANDBOX_PORT

    # Paging services (activities/paging/). PAGING_BACKENDS names those the worker can page
    # through, comma separated; unset: slack, plus pagerduty when PAGERDUTY_EVENTS_URL is set and
    # opsgenie when OPSGENIE_API_URL is set. The URLs default to the local sandboxes, so
    # PAGING_BACKENDS=slack,pagerduty,opsgenie alone uses them; `incident dev` sets them.
    paging_backends: str = ""
    # PagerDuty Events API v2. Real: PAGERDUTY_EVENTS_URL=https://events.pagerduty.com and the
    # 32-character integration key of a service's "Events API v2" integration. The webhook
    # secret is the V3 webhook subscription's, for the receiver to check X-PagerDuty-Signature.
    pagerduty_events_url: str = f"http://127.0.0.1:{PAGERDUTY_SANDBOX_PORT}"
    pagerduty_routing_key: str = PAGERDUTY_SANDBOX_ROUTING_KEY
    pagerduty_webhook_secret: str = ""  # unset: every PagerDuty webhook is refused (401)
    pagerduty_timeout: float = 10.0
    pagerduty_sandbox_port: int = PAGERDUTY_SANDBOX_PORT
    # Opsgenie Alert API. Real: OPSGENIE_API_URL=https://api.opsgenie.com (EU accounts:
    # https://api.eu.opsgenie.com) and an API integration's key. The webhook token is the
    # custom header X-Opsgenie-Webhook-Token the Webhook integration sends with each callback.
    opsgenie_api_url: str = f"http://127.0.0.1:{OPSGENIE_SANDBOX_PORT}"
    opsgenie_api_key: str = OPSGENIE_SANDBOX_API_KEY
    opsgenie_webhook_token: str = ""  # unset: every Opsgenie callback is refused (401)
    opsgenie_timeout: float = 10.0
    opsgenie_sandbox_port: int = OPSGENIE_SANDBOX_PORT

    # Email over SMTP (activities/email/): stakeholder notifications. No SMTP_HOST: email is off
    # and the send_email activity says so. Real: the relay's host, port 587, SMTP_STARTTLS=true and
    # its credentials; `incident dev` sets SMTP_HOST/SMTP_PORT to its sandbox (no TLS, no AUTH).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_from: str = "incident-response@localhost"
    smtp_timeout: float = 10.0
    smtp_sandbox_port: int = SMTP_SANDBOX_PORT
    smtp_sandbox_http_port: int = SMTP_SANDBOX_HTTP_PORT

    # pyATS (activities/devices/): the testbed, its diagnostic plans, and timeouts.
    pyats_testbed: str = "config/testbed.yaml"
    pyats_plans_dir: str = "config/plans"
    pyats_connect_timeout: float = 20.0
    pyats_command_timeout: float = 60.0

    # The worker's SDK metrics (sticky cache hits, misses and evictions, slots, latencies) in
    # Prometheus text at http://<this>/metrics, e.g. 127.0.0.1:9464; empty: not served.
    worker_metrics_address: str = ""
    # How often (seconds) the worker counts the open incidents in visibility for `incident_open`.
    worker_metrics_every: float = 15.0
    # Incidents the worker keeps in memory between their workflow tasks (the SDK's default). One
    # that is not in it replays its history before each task: with more open incidents than
    # this, most pages cost a replay; each one kept costs memory (bench/paging.py measures both).
    worker_max_cached_workflows: int = 1000

    incident_policy: str | None = None  # path to a policy YAML; default config/policy.yaml
    incident_oncall: str | None = None  # the on-call schedules; default config/oncall.yaml
    incident_oncall_overrides: str | None = None  # default: oncall-overrides.yaml beside them
    incident_data_dir: str = ".data"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
