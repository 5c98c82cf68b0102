"""A fresh SLA service's calendars and policy; editable afterwards through the admin API."""

from __future__ import annotations

from datetime import time

from sportello_contracts.enums import ContractTier, Priority, SupportLevel
from sportello_sla.domain import Calendar, SlaPolicy, Targets

WEEKDAY_HOURS = ((time(9), time(13)), (time(14), time(18)))

OFFICE_HOURS = Calendar(
    "office-hours", "Europe/Rome", dict.fromkeys(range(5), WEEKDAY_HOURS),
    holiday_country="IT",
)
ROUND_THE_CLOCK = Calendar("24x7", "Europe/Rome", always_open=True)

HOUR = 3600

DEFAULT_POLICY = SlaPolicy(
    version=1,
    calendars={OFFICE_HOURS.name: OFFICE_HOURS, ROUND_THE_CLOCK.name: ROUND_THE_CLOCK},
    targets={
        Priority.P1: Targets(15 * 60, 4 * HOUR, ROUND_THE_CLOCK.name),
        Priority.P2: Targets(30 * 60, 8 * HOUR, OFFICE_HOURS.name),
        Priority.P3: Targets(2 * HOUR, 24 * HOUR, OFFICE_HOURS.name),
        Priority.P4: Targets(8 * HOUR, 40 * HOUR, OFFICE_HOURS.name),
    },
    level_time_box_s={SupportLevel.L1: 20 * 60, SupportLevel.L2: 2 * HOUR,
                      SupportLevel.L3: 8 * HOUR},
    tier_factor={ContractTier.STANDARD: 1.0, ContractTier.SILVER: 0.75, ContractTier.GOLD: 0.5},
    warning_thresholds=(75, 90),
)
