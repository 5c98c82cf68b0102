"""Routing's rules as pure functions: triage, the priority matrix, groups, agents, moves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sportello_contracts import new_event
from sportello_contracts.enums import (
    Channel,
    ContractTier,
    CustomerType,
    EscalationKind,
    Impact,
    Priority,
    SupportLevel,
    Urgency,
)
from sportello_contracts.events import Requester, TicketCreated
from sportello_routing import domain
from sportello_routing.defaults import DEFAULT_GROUPS, DEFAULT_POLICY
from sportello_routing.domain import (
    Agent,
    Group,
    IllegalMove,
    InvalidPolicy,
    TriageInput,
    TriageRule,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
GROUPS = list(DEFAULT_GROUPS)
L1, L2, L3, L4 = SupportLevel.L1, SupportLevel.L2, SupportLevel.L3, SupportLevel.L4


def ticket(subject: str, body: str = "", **overrides: object) -> TriageInput:
    values: dict[str, object] = {
        "subject": subject, "body": body, "sender_email": "mario@acme.it", "department": "Sales",
        "channel": "web", "customer_type": CustomerType.PRIVATE, "contract_tier": None,
    }
    values.update(overrides)
    return TriageInput(**values)  # type: ignore[arg-type]


# --- triage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "body", "category"),
    [
        ("VPN non si connette", "errore 809", "network"),
        ("Password scaduta", "non riesco ad accedere", "account"),
        ("Stampante bloccata", "il toner è finito", "printer"),
        ("Outlook crashes", "mailbox full", "email"),
        ("Laptop screen broken", "", "hardware"),
        ("Richiesta generica", "vorrei informazioni sul corso", "general"),
    ],
)
def test_rules_choose_the_category(subject: str, body: str, category: str) -> None:
    assert domain.triage(ticket(subject, body), DEFAULT_POLICY).category == category


def test_an_explicit_category_from_the_channel_wins_when_known() -> None:
    assert domain.triage(ticket("VPN down", category_hint="server"),
                         DEFAULT_POLICY).category == "server"
    assert domain.triage(ticket("VPN down", category_hint="teleport"),
                         DEFAULT_POLICY).category == "network"


def test_rules_see_sender_domain_department_and_channel() -> None:
    policy = replace(DEFAULT_POLICY, rules=(
        TriageRule("server", 'sender_domain == "datacenter.example" and channel == "email"'),
        TriageRule("software", 'department == "R&D"'),
    ))
    assert domain.triage(ticket("help", sender_email="ops@datacenter.example", channel="email"),
                         policy).category == "server"
    assert domain.triage(ticket("help", department="R&D"), policy).category == "software"


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [(Impact.HIGH, Urgency.HIGH, Priority.P1), (Impact.HIGH, Urgency.LOW, Priority.P3),
     (Impact.MEDIUM, Urgency.MEDIUM, Priority.P3), (Impact.LOW, Urgency.LOW, Priority.P4),
     (Impact.MEDIUM, Urgency.HIGH, Priority.P2)],
)
def test_priority_comes_from_the_impact_urgency_matrix(
    impact: Impact, urgency: Urgency, priority: Priority
) -> None:
    result = domain.triage(ticket("Mouse", impact=impact, urgency=urgency), DEFAULT_POLICY)
    assert result.priority is priority


def test_business_contract_tier_raises_priority_private_customers_do_not() -> None:
    gold = ticket("Mouse", customer_type=CustomerType.BUSINESS, contract_tier=ContractTier.GOLD)
    standard = ticket("Mouse", customer_type=CustomerType.BUSINESS,
                      contract_tier=ContractTier.STANDARD)
    private_gold = ticket("Mouse", contract_tier=ContractTier.GOLD)
    assert domain.triage(gold, DEFAULT_POLICY).priority is Priority.P2
    assert domain.triage(standard, DEFAULT_POLICY).priority is Priority.P3
    assert domain.triage(private_gold, DEFAULT_POLICY).priority is Priority.P3


def test_criticality_markers_raise_impact_and_priority() -> None:
    result = domain.triage(ticket("Email outage", "nessuno riesce a inviare posta"),
                           DEFAULT_POLICY)
    assert result.critical
    assert result.category == "email"
    assert result.impact is Impact.HIGH
    assert result.priority is Priority.P1  # high x medium = P2, raised one step


def test_priority_never_goes_above_p1() -> None:
    assert domain.raise_priority(Priority.P1, 3) is Priority.P1
    assert domain.raise_priority(Priority.P4, 2) is Priority.P2


# --- policy validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        (TriageRule("network", 'subjekt =~~ "vpn"'), "rules.0.when", "unknown symbol"),
        (TriageRule("network", 'text =~~ "(unclosed"'), "rules.0.when", "regular expression"),
        (TriageRule("network", "text =="), "rules.0.when", "syntax error"),
        (TriageRule("teleport", 'text =~~ "beam"'), "rules.0.category", "unknown category"),
    ],
)
def test_a_rule_that_cannot_work_is_refused_with_the_reason(
    rule: TriageRule, field: str, words: str
) -> None:
    with pytest.raises(InvalidPolicy) as refused:
        domain.check_policy(replace(DEFAULT_POLICY, rules=(rule,)))
    assert refused.value.field == field
    assert words in str(refused.value)


def test_the_matrix_must_cover_every_cell() -> None:
    matrix = {i: dict(row) for i, row in DEFAULT_POLICY.matrix.items()}
    del matrix[Impact.LOW][Urgency.HIGH]
    with pytest.raises(InvalidPolicy) as refused:
        domain.check_policy(replace(DEFAULT_POLICY, matrix=matrix))
    assert refused.value.field == "matrix.low.high"


def test_the_default_policy_and_groups_are_valid() -> None:
    domain.check_policy(DEFAULT_POLICY)
    domain.check_groups(GROUPS)


# --- groups ---------------------------------------------------------------------------------


def test_escalation_chains_cannot_loop_or_go_down() -> None:
    loop = [Group("a", "A", L2, escalates_to="b"), Group("b", "B", L3, escalates_to="a")]
    with pytest.raises(InvalidPolicy, match=r"higher level|loops"):
        domain.check_groups(loop)
    self_loop = [Group("a", "A", L2, escalates_to="a")]
    with pytest.raises(InvalidPolicy, match="loops"):
        domain.check_groups(self_loop)
    with pytest.raises(InvalidPolicy, match="unknown group"):
        domain.check_groups([Group("a", "A", L2, escalates_to="ghost")])
    with pytest.raises(InvalidPolicy, match="vendor_contact"):
        domain.check_groups([Group("v", "Vendor", L4)])


def test_groups_are_chosen_by_level_and_category_then_default() -> None:
    assert domain.group_for(GROUPS, L2, "network").id == "l2-network"  # type: ignore[union-attr]
    assert domain.group_for(GROUPS, L2, "general").id == "l2-software"  # type: ignore[union-attr]
    desk = GROUPS[0]
    network = domain.group_for(GROUPS, L2, "network")
    assert domain.escalation_target(GROUPS, desk, "network") == network
    experts = domain.escalation_target(GROUPS, network, "network")  # type: ignore[arg-type]
    assert experts is not None
    assert experts.id == "l3-experts"
    vendor = domain.escalation_target(GROUPS, experts, "network")
    assert vendor is not None
    assert vendor.id == "l4-vendor"  # the chain
    assert domain.escalation_target(GROUPS, vendor, "network") is None


# --- agents ---------------------------------------------------------------------------------


def agent(agent_id: str, open_tickets: int = 0, capacity: int = 4, skills: tuple[str, ...] = (),
          available: bool = True, last: datetime | None = None) -> Agent:
    return Agent(agent_id, agent_id.title(), L1, ("service-desk",), skills, capacity, available,
                 open_tickets, last)


def test_the_least_loaded_available_agent_with_room_gets_the_ticket() -> None:
    agents = [agent("anna", 3), agent("bruno", 1), agent("carla", 0, available=False),
              agent("dario", 4)]
    assert domain.pick_agent(agents, "service-desk", "general").id == "bruno"  # type: ignore[union-attr]


def test_load_is_relative_to_capacity() -> None:
    agents = [agent("anna", 2, capacity=10), agent("bruno", 1, capacity=2)]
    assert domain.pick_agent(agents, "service-desk", "general").id == "anna"  # type: ignore[union-attr]


def test_ties_go_round_robin_to_whoever_waited_longest() -> None:
    agents = [agent("anna", 1, last=NOW), agent("bruno", 1, last=NOW - timedelta(minutes=5)),
              agent("carla", 1, last=NOW - timedelta(minutes=1))]
    assert domain.pick_agent(agents, "service-desk", "general").id == "bruno"  # type: ignore[union-attr]


def test_the_needed_skill_is_required_when_someone_in_the_group_has_it() -> None:
    agents = [agent("anna", 0), agent("bruno", 3, skills=("network",))]
    assert domain.pick_agent(agents, "service-desk", "network").id == "bruno"  # type: ignore[union-attr]
    busy_expert = [agent("anna", 0), agent("bruno", 4, skills=("network",))]
    assert domain.pick_agent(busy_expert, "service-desk", "network") is None  # waits for him
    assert domain.pick_agent(agents, "service-desk", "printer").id == "anna"  # type: ignore[union-attr]


def test_nobody_with_room_means_the_ticket_waits() -> None:
    assert domain.pick_agent([agent("anna", 4), agent("bruno", 0, capacity=0)],
                             "service-desk", "general") is None


# --- moves ----------------------------------------------------------------------------------


def new_assignment(agent_id: str | None = "anna") -> domain.Assignment:
    created = TicketCreated(
        ticket_id="t-1", number="HD-2026-000001", channel=Channel.EMAIL,
        requester=Requester(name="Acme", customer_type=CustomerType.BUSINESS,
                            contract_tier=ContractTier.GOLD),
        subject="VPN down for the whole office", description="", created_at=NOW,
    )
    cause = new_event(created, producer="intake", correlation_id="t-1")
    result = domain.triage(TriageInput.of(created), DEFAULT_POLICY)
    change = domain.route_new_ticket(created, result, GROUPS[0],
                                       agent(agent_id) if agent_id else None, cause=cause, now=NOW)
    assert [e.type for e in change.events] == ["ticket.triaged", "ticket.assigned"]
    return change.record


def test_a_new_ticket_without_a_free_agent_waits_in_the_group_queue() -> None:
    queued = new_assignment(agent_id=None)
    assert queued.state == "queued"
    assert queued.agent_id is None
    given = domain.give_to_agent(queued, agent("bruno"), now=NOW)
    assert given.record.state == "assigned"
    assert given.record.agent_id == "bruno"
    assert given.record.sequence == 2
    with pytest.raises(IllegalMove):
        domain.give_to_agent(given.record, agent("carla"), now=NOW)


def test_escalation_goes_up_frees_the_agent_and_says_so() -> None:
    a = new_assignment()
    network = domain.group_for(GROUPS, L2, "network")
    assert network is not None
    change = domain.escalate(a, network, None, kind=EscalationKind.MANUAL,
                               reason="needs a network specialist", actor="anna", now=NOW)
    moved = change.record
    assert (moved.level, moved.group_id, moved.state) == (L2, "l2-network", "queued")
    assert domain.released_agent(a, moved) == "anna"
    escalated, assigned = change.events
    assert escalated.type == "ticket.escalated"
    assert escalated.payload["from_level"] == "L1"
    assert escalated.payload["to_level"] == "L2"
    assert assigned.payload["sequence"] == moved.sequence == 2
    assert moved.history[-1]["reason"] == "needs a network specialist"


def test_escalation_never_goes_down_and_only_l3_hands_over_to_a_vendor() -> None:
    a = new_assignment()
    with pytest.raises(IllegalMove, match="goes up"):
        domain.escalate(a, GROUPS[0], None, kind=EscalationKind.MANUAL, reason="x", actor=None,
                        now=NOW)
    vendor = next(g for g in GROUPS if g.level is L4)
    with pytest.raises(IllegalMove, match="only L3"):
        domain.escalate(a, vendor, None, kind=EscalationKind.MANUAL, reason="x", actor=None,
                        now=NOW)


def test_automatic_escalation_remembers_the_breached_clock() -> None:
    a = new_assignment()
    network = next(g for g in GROUPS if g.id == "l2-network")
    moved = domain.escalate(a, network, None, kind=EscalationKind.AUTOMATIC,
                            reason="L1 time box breached", actor="sla", now=NOW,
                            clock_id="clock-1").record
    assert moved.escalated_clocks == ("clock-1",)
    assert moved.history[-1]["escalation"] == "automatic"


def test_hand_back_keeps_the_higher_level_as_owner() -> None:
    a = new_assignment()
    experts = next(g for g in GROUPS if g.id == "l3-experts")
    at_l3 = domain.escalate(a, next(g for g in GROUPS if g.id == "l2-network"), None,
                            kind=EscalationKind.MANUAL, reason="r", actor=None, now=NOW)
    at_l3 = domain.escalate(at_l3.record, experts, None, kind=EscalationKind.MANUAL,
                            reason="r", actor=None, now=NOW)
    back = domain.hand_back(at_l3.record, GROUPS[0], None, reason="call the customer",
                            actor="eva", now=NOW)
    assert back.record.level is L1
    assert back.record.owner_group_id == "l3-experts"
    with pytest.raises(IllegalMove, match="goes down"):
        domain.hand_back(back.record, experts, None, reason="r", actor=None, now=NOW)


def test_priority_override_needs_a_change_and_is_announced() -> None:
    a = new_assignment()
    assert domain.change_priority(a, a.priority, reason="same", actor="c", now=NOW) is None
    change = domain.change_priority(a, Priority.P1, reason="CEO affected", actor="coord",
                                      now=NOW)
    assert change is not None
    assert change.record.priority is Priority.P1
    [event] = change.events
    assert event.type == "ticket.priority_changed"
    assert event.payload["reason"] == "CEO affected"


def test_release_and_reopen() -> None:
    a = new_assignment()
    released = domain.release(a, reason="resolved", now=NOW)
    assert released is not None
    assert domain.released_agent(a, released.record) == "anna"
    assert domain.release(released.record, reason="closed", now=NOW) is None
    reopened = domain.reopen(released.record, GROUPS[0], agent("bruno"), reason="not fixed",
                             cause=None, now=NOW)
    assert reopened is not None
    assert reopened.record.state == "assigned"
    assert reopened.record.agent_id == "bruno"
    with pytest.raises(IllegalMove, match="reopen"):
        domain.escalate(released.record, GROUPS[1], None, kind=EscalationKind.MANUAL,
                        reason="r", actor=None, now=NOW)


def test_a_chosen_agent_of_the_group_gets_the_ticket_even_when_full() -> None:
    a = new_assignment(agent_id=None)
    full = agent("bruno", open_tickets=4, capacity=4)
    change = domain.assign_to(a, full, reason="taken", actor="bruno", now=NOW)
    assert change is not None
    assert (change.record.agent_id, change.record.state) == ("bruno", "assigned")
    assert change.record.version == a.version + 1
    [event] = change.events
    assert (event.type, event.payload["agent_id"]) == ("ticket.assigned", "bruno")
    assert domain.assign_to(change.record, full, reason="again", actor="bruno", now=NOW) is None


def test_only_an_agent_of_the_holding_group_on_shift_can_be_given_the_ticket() -> None:
    a = new_assignment(agent_id=None)
    outsider = Agent("olga", "Olga", L1, ("l2-network",))
    with pytest.raises(IllegalMove, match="not in service-desk"):
        domain.assign_to(a, outsider, reason="r", actor="c", now=NOW)
    with pytest.raises(IllegalMove, match="not on shift"):
        domain.assign_to(a, agent("anna", available=False), reason="r", actor="c", now=NOW)
    released = domain.release(a, reason="resolved", now=NOW)
    assert released is not None
    with pytest.raises(IllegalMove, match="reopen it first"):
        domain.assign_to(released.record, agent("anna"), reason="r", actor="c", now=NOW)
