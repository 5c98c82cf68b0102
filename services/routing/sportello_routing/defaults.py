"""What a fresh routing service starts with: editable afterwards through the admin API."""

from __future__ import annotations

from sportello_contracts.enums import ContractTier, Impact, Priority, SupportLevel, Urgency
from sportello_routing.domain import GENERAL, Group, TriagePolicy, TriageRule

Imp, U, P = Impact, Urgency, Priority

CATEGORIES = (GENERAL, "account", "network", "email", "printer", "hardware", "software",
              "server")

DEFAULT_POLICY = TriagePolicy(
    version=1,
    categories=CATEGORIES,
    rules=(
        TriageRule(None, 'text =~~ "outage|down for everyone|all users|tutti gli utenti|'
                         r'nessuno riesce|production down|servizio interrotto"',
                   impact=Imp.HIGH, critical=True),
        TriageRule("account", r'text =~~ "password|account|log ?in|locked out|accesso|'
                              r'credenziali|mfa|2fa"'),
        TriageRule("network", r'text =~~ "vpn|wi-?fi|network|internet|rete|switch|router|dns"'),
        TriageRule("email", r'text =~~ "e-?mail|outlook|mailbox|posta|calendar"'),
        TriageRule("printer", r'text =~~ "print|stampa|toner|scanner"'),
        TriageRule("server", r'text =~~ "server|database|disk|storage|backup|vm\\b"'),
        TriageRule("hardware", r'text =~~ "laptop|notebook|monitor|mouse|keyboard|tastiera|'
                               r'pc\\b|docking"'),
        TriageRule("software", r'text =~~ "install|software|licen[sc]e|crash|update|'
                               r'aggiornamento|applicazione"'),
    ),
    matrix={
        Imp.HIGH: {U.HIGH: P.P1, U.MEDIUM: P.P2, U.LOW: P.P3},
        Imp.MEDIUM: {U.HIGH: P.P2, U.MEDIUM: P.P3, U.LOW: P.P3},
        Imp.LOW: {U.HIGH: P.P3, U.MEDIUM: P.P4, U.LOW: P.P4},
    },
    tier_raise={ContractTier.STANDARD: 0, ContractTier.SILVER: 1, ContractTier.GOLD: 1},
)

DEFAULT_GROUPS = (
    Group("service-desk", "L1 Service Desk", SupportLevel.L1, default_for_level=True),
    Group("l2-network", "L2 Network", SupportLevel.L2, ("network",)),
    Group("l2-software", "L2 Software", SupportLevel.L2, ("software", "email", "account"),
          default_for_level=True),
    Group("l2-server", "L2 Server & Storage", SupportLevel.L2, ("server",)),
    Group("l2-workplace", "L2 Workplace (hardware, printers)", SupportLevel.L2,
          ("hardware", "printer")),
    Group("l3-experts", "L3 Experts", SupportLevel.L3, default_for_level=True,
          escalates_to="l4-vendor"),
    Group("l4-vendor", "L4 External vendor", SupportLevel.L4, default_for_level=True,
          vendor_contact="support@vendor.example"),
)
