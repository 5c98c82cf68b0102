"""The help desk's shared vocabulary: every service speaks these values."""

from enum import StrEnum


class Channel(StrEnum):
    """Where a ticket or message came from."""

    WEB = "web"
    EMAIL = "email"
    CHAT = "chat"
    PHONE = "phone"
    API = "api"


class TicketStatus(StrEnum):
    """The ticket lifecycle owned by intake (see intake's domain for the transitions)."""

    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    WAITING_CUSTOMER = "waiting_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


class SupportLevel(StrEnum):
    """L0 self-service, L1 first line, L2 specialists, L3 experts, L4 external vendors."""

    L0 = "L0"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Impact(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Urgency(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class CustomerType(StrEnum):
    PRIVATE = "private"
    BUSINESS = "business"


class ContractTier(StrEnum):
    """Business customers' contract; raises priority and tightens SLA targets."""

    STANDARD = "standard"
    SILVER = "silver"
    GOLD = "gold"


class Author(StrEnum):
    """Who wrote a message in a ticket's conversation."""

    REQUESTER = "requester"
    AGENT = "agent"
    SYSTEM = "system"


class Visibility(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"


class SlaMetric(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"
    LEVEL_TIME_BOX = "level_time_box"


class EscalationKind(StrEnum):
    MANUAL = "manual"
    AUTOMATIC = "automatic"
