"""Knowledge's HTTP doors: ``internal`` (behind the service token: editors, agents, the
gateway), ``public`` (requesters' search and articles, rate limited per client) and
``pages`` (the self-service pages a requester reads)."""

from sportello_knowledge.api.internal import internal
from sportello_knowledge.api.pages import pages
from sportello_knowledge.api.public import public

__all__ = ["internal", "pages", "public"]
