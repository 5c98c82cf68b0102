"""Triage: category, priority (impact x urgency, raised for business tiers) and the rules
that decide them, as the triage policy says. No I/O."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import rule_engine

from sportello_contracts.enums import (
    ContractTier,
    CustomerType,
    Impact,
    Priority,
    Urgency,
)
from sportello_contracts.events import (
    TicketCreated,
)
from sportello_routing.domain.staff import GENERAL, PRIORITY_ORDER, InvalidPolicy

# --- triage ----------------------------------------------------------------------

RULE_FIELDS = {
    "subject": rule_engine.DataType.STRING,
    "body": rule_engine.DataType.STRING,
    "text": rule_engine.DataType.STRING,
    "sender_domain": rule_engine.DataType.STRING,
    "department": rule_engine.DataType.STRING,
    "channel": rule_engine.DataType.STRING,
    "customer_type": rule_engine.DataType.STRING,
}
_RULE_CONTEXT = rule_engine.Context(
    regex_flags=re.IGNORECASE, type_resolver=rule_engine.type_resolver_from_dict(RULE_FIELDS)
)
_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


@dataclass(frozen=True)
class TriageRule:
    """``when`` is a rule-engine expression over ``RULE_FIELDS``, e.g.
    ``text =~~ "vpn|wi-?fi" or department == "Network"``."""

    category: str | None
    when: str
    impact: Impact | None = None
    urgency: Urgency | None = None
    critical: bool = False


@dataclass(frozen=True)
class TriagePolicy:
    version: int
    rules: tuple[TriageRule, ...]
    matrix: Mapping[Impact, Mapping[Urgency, Priority]]
    tier_raise: Mapping[ContractTier, int]
    categories: tuple[str, ...]
    default_impact: Impact = Impact.MEDIUM
    default_urgency: Urgency = Urgency.MEDIUM
    model_threshold: float = 0.6
    """When no rule decides the category, the learned model's guess is taken at this
    confidence or above (its confidences are calibrated: 0.6 is right about 6 times in 10)."""


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str) -> rule_engine.Rule:
    """Parsing an expression costs far more than matching it, and every ticket runs every
    rule of the policy: each distinct expression is compiled once per process."""
    return rule_engine.Rule(expression, context=_RULE_CONTEXT)


def compile_rule(rule: TriageRule, index: int) -> rule_engine.Rule:
    try:
        return _compiled(rule.when)
    except rule_engine.EngineError as exc:
        reason = getattr(exc, "message", str(exc))
        raise InvalidPolicy(f"rule {index} does not compile: {reason}",
                            field=f"rules.{index}.when") from exc


def check_policy(policy: TriagePolicy) -> None:
    """Refuse a policy that cannot work, saying which part and why."""
    for category in policy.categories:
        if not _CATEGORY.match(category):
            raise InvalidPolicy(f"category {category!r} must be a lower-case slug",
                                field="categories")
    if GENERAL not in policy.categories:
        raise InvalidPolicy(f"the categories must include {GENERAL!r}", field="categories")
    for index, rule in enumerate(policy.rules):
        compile_rule(rule, index)
        if rule.category is not None and rule.category not in policy.categories:
            raise InvalidPolicy(f"rule {index} names unknown category {rule.category!r}",
                                field=f"rules.{index}.category")
    for impact in Impact:
        for urgency in Urgency:
            if urgency not in policy.matrix.get(impact, {}):
                raise InvalidPolicy(
                    f"the priority matrix has no cell for impact {impact.value} and urgency "
                    f"{urgency.value}",
                    field=f"matrix.{impact.value}.{urgency.value}",
                )
    if not 0 < policy.model_threshold <= 1:
        raise InvalidPolicy("the model's threshold is a confidence above 0 and at most 1",
                            field="model_threshold")
    for tier, steps in policy.tier_raise.items():
        if not 0 <= steps <= 3:
            raise InvalidPolicy(f"tier {tier.value} may raise priority 0 to 3 steps",
                                field=f"tier_raise.{tier.value}")


@dataclass(frozen=True)
class TriageInput:
    subject: str
    body: str
    sender_email: str | None
    department: str | None
    channel: str
    customer_type: CustomerType
    contract_tier: ContractTier | None
    category_hint: str | None = None
    impact: Impact | None = None
    urgency: Urgency | None = None

    @classmethod
    def of(cls, created: TicketCreated) -> TriageInput:
        requester = created.requester
        return cls(
            subject=created.subject,
            body=created.description,
            sender_email=str(requester.email) if requester.email else None,
            department=requester.department,
            channel=created.channel.value,
            customer_type=requester.customer_type,
            contract_tier=requester.contract_tier,
            category_hint=created.category_hint,
            impact=created.impact,
            urgency=created.urgency,
        )

    def facts(self) -> dict[str, str]:
        domain = self.sender_email.rsplit("@", 1)[-1].lower() if self.sender_email else ""
        return {
            "subject": self.subject,
            "body": self.body,
            "text": f"{self.subject}\n{self.body}",
            "sender_domain": domain,
            "department": self.department or "",
            "channel": self.channel,
            "customer_type": self.customer_type.value,
        }


@dataclass(frozen=True)
class Prediction:
    """The learned model's guess for one ticket."""

    label: str
    confidence: float
    model_version: int


@dataclass(frozen=True)
class DecidedBy:
    """What chose a ticket's category, kept so that coordinators see it and can correct it:
    ``hint`` (the channel said), ``rule`` (``rule``: its index), ``model`` (its version and
    confidence) or ``default`` (nothing did; a model consulted is still named)."""

    kind: Literal["hint", "rule", "model", "default"]
    rule: int | None = None
    model_version: int | None = None
    confidence: float | None = None

    def fields(self) -> dict[str, Any]:
        return {"decided_by": self.kind, "rule": self.rule, "model_version": self.model_version,
                "confidence": self.confidence}


@dataclass(frozen=True)
class Triage:
    category: str
    impact: Impact
    urgency: Urgency
    priority: Priority
    critical: bool
    matched_rules: tuple[int, ...]
    policy_version: int
    decided_by: DecidedBy = DecidedBy("default")


def raise_priority(priority: Priority, steps: int) -> Priority:
    return PRIORITY_ORDER[max(0, PRIORITY_ORDER.index(priority) - steps)]


def triage(ticket: TriageInput, policy: TriagePolicy) -> Triage:
    """Category from the channel's explicit hint or the first matching rule; priority from
    impact x urgency, raised by the contract tier and by criticality markers."""
    facts = ticket.facts()
    matched = [
        (index, rule) for index, rule in enumerate(policy.rules)
        if compile_rule(rule, index).matches(facts)
    ]
    category, decided_by = GENERAL, DecidedBy("default")
    if ticket.category_hint and ticket.category_hint in policy.categories:
        category, decided_by = ticket.category_hint, DecidedBy("hint")
    else:
        deciding = next(((i, r.category) for i, r in matched if r.category), None)
        if deciding is not None:
            category, decided_by = deciding[1], DecidedBy("rule", rule=deciding[0])
    impact = ticket.impact or next(
        (r.impact for _, r in matched if r.impact), policy.default_impact
    )
    urgency = ticket.urgency or next(
        (r.urgency for _, r in matched if r.urgency), policy.default_urgency
    )
    priority = policy.matrix[impact][urgency]
    if ticket.customer_type is CustomerType.BUSINESS and ticket.contract_tier is not None:
        priority = raise_priority(priority, policy.tier_raise.get(ticket.contract_tier, 0))
    critical = any(r.critical for _, r in matched)
    if critical:
        priority = raise_priority(priority, 1)
    return Triage(category, impact, urgency, priority, critical,
                  tuple(i for i, _ in matched), policy.version, decided_by)


def needs_model(result: Triage) -> bool:
    """Rules first: the model is asked only when neither the channel nor a rule chose."""
    return result.decided_by.kind == "default"


def use_prediction(result: Triage, prediction: Prediction | None,
                   policy: TriagePolicy) -> Triage:
    """The model's guess decides the category when nothing else did and it is confident
    enough (and names a category the policy still has); otherwise the general category
    stays, with the declined guess recorded beside it."""
    if prediction is None or not needs_model(result):
        return result
    confident = prediction.confidence >= policy.model_threshold
    if confident and prediction.label in policy.categories:
        return replace(result, category=prediction.label, decided_by=DecidedBy(
            "model", model_version=prediction.model_version,
            confidence=prediction.confidence))
    return replace(result, decided_by=DecidedBy(
        "default", model_version=prediction.model_version, confidence=prediction.confidence))


