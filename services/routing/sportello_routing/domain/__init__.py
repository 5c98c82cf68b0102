"""Routing's rules, no I/O: the desk's structure (``staff``), triage (``classification``)
and a ticket's assignment and its moves (``assignment``).

The store loads groups, agents, the triage policy and a ticket's assignment; these
functions decide; the store writes the change and its events in one document update.
"""

from sportello_routing.domain.assignment import (
    Assignment,
    AssignmentState,
    assign_to,
    change_priority,
    escalate,
    give_to_agent,
    hand_back,
    release,
    released_agent,
    reopen,
    route_new_ticket,
)
from sportello_routing.domain.classification import (
    RULE_FIELDS,
    Triage,
    TriageInput,
    TriagePolicy,
    TriageRule,
    check_policy,
    compile_rule,
    raise_priority,
    triage,
)
from sportello_routing.domain.staff import (
    GENERAL,
    LEVEL_ORDER,
    PRIORITY_ORDER,
    PRODUCER,
    Agent,
    Group,
    IllegalMove,
    InvalidPolicy,
    RoutingError,
    check_groups,
    escalation_target,
    group_for,
    level_rank,
    pick_agent,
)

__all__ = [
    "GENERAL",
    "LEVEL_ORDER",
    "PRIORITY_ORDER",
    "PRODUCER",
    "RULE_FIELDS",
    "Agent",
    "Assignment",
    "AssignmentState",
    "Group",
    "IllegalMove",
    "InvalidPolicy",
    "RoutingError",
    "Triage",
    "TriageInput",
    "TriagePolicy",
    "TriageRule",
    "assign_to",
    "change_priority",
    "check_groups",
    "check_policy",
    "compile_rule",
    "escalate",
    "escalation_target",
    "give_to_agent",
    "group_for",
    "hand_back",
    "level_rank",
    "pick_agent",
    "raise_priority",
    "release",
    "released_agent",
    "reopen",
    "route_new_ticket",
    "triage",
]
