from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sportello_runtime.settings import ServiceSettings


class KnowledgeSettings(ServiceSettings):
    service_name: str = "knowledge"
    service_port: int = 8004
    mongo_database: str = "sportello_knowledge"
    index_dir: Path = Field(
        default=Path(".run/knowledge-index"),
        description="This replica's search index (derived data, rebuilt from MongoDB when "
        "missing): local disk, one folder per replica")
    help_url: str = Field(default="http://localhost:8004",
                            description="Where requesters reach the help pages "
                            "(links in suggestion mails)")
    ticket_form_url: str = Field(
        default="http://localhost:8000/portal/new",
        description="The web form a requester is sent to when no article helped")
    default_language: str = Field(default="en", pattern=r"^(it|en)$")
    public_per_minute: int = Field(default=60, ge=1,
                                   description="Self-service requests per client and minute")
    public_burst: int = Field(default=20, ge=1)
    requester_suggestions: int = Field(default=3, ge=0, le=10)
    agent_suggestions: int = Field(default=5, ge=0, le=20)
    candidate_min_words: int = Field(
        default=12, ge=1, description="A resolution shorter than this is no candidate article")
    coverage: float = Field(default=0.6, gt=0, le=1,
                            description="Share of a problem's terms an article must hold to "
                            "cover it")
    faq_threshold: int = Field(default=5, ge=2,
                               description="Similar cases in a month that make an FAQ proposal")
    faq_similarity: float = Field(default=0.35, gt=0, le=1)
    index_catch_up_margin_s: float = Field(
        default=60.0, ge=0, description="How far before a gap a replica re-reads changes")
