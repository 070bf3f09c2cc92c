"""What the `attach_review` activity is given and answers (apart from review_models.py, which
workflows/models.py imports: this one needs the incident's state)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .models import IncidentState


class ReviewDraftRequest(BaseModel):
    """Draft the review from the incident (its state as resolved) and attach it with its artifacts."""

    model_config = ConfigDict(extra="ignore")

    incident: IncidentState


class AttachedReview(BaseModel):
    """What `attach_review` put in the thread: each file's title, and what could not be attached."""

    model_config = ConfigDict(extra="ignore")

    attached: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
