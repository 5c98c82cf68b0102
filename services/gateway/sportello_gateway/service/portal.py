"""The requester portal's use cases: sign in by a mailed link, ask for help (the knowledge
base first), follow one's own requests, answer, confirm, rate.

The portal owns only its sign-in links and sessions. Tickets are intake's and articles
knowledge's: everything else goes through their APIs, and intake answers only the
signed-in requester's own tickets (another number is a 404, as if it did not exist)."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiosmtplib

from sportello_contracts import utc_now
from sportello_gateway.backends import Backends, Refused
from sportello_gateway.domain import portal as rules
from sportello_gateway.domain.portal import LinkRefused, PortalSession, SignInLink
from sportello_gateway.portal.texts import text
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_gateway.settings import GatewaySettings
from sportello_gateway.store import PortalStore

log = logging.getLogger(__name__)


class NotConfigured(Exception):
    """What the portal needs is not configured (the SMTP relay, the web channel's key)."""


class TooManyLinks(Exception):
    """This address or this client asked for too many links within the hour."""


class NotYours(Exception):
    """No such request among the signed-in requester's (whether or not it exists)."""


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    content: bytes

    def as_json(self) -> dict[str, str]:
        return {"filename": self.filename, "content_type": self.content_type,
                "content_base64": base64.b64encode(self.content).decode()}


@dataclass(frozen=True)
class NewRequest:
    """The form, as the requester filled it."""

    name: str
    subject: str
    description: str
    category: str | None
    reach: rules.Reach | None
    hurry: rules.Hurry | None
    files: tuple[Upload, ...]


class Portal:
    def __init__(self, store: PortalStore, backends: Backends, metrics: GatewayMetrics,
                 settings: GatewaySettings) -> None:
        self.store = store
        self.backends = backends
        self.metrics = metrics
        self.settings = settings
        self.quota = rules.LinkQuota(per_address=settings.portal_links_per_address,
                                     per_client=settings.portal_links_per_client,
                                     window=timedelta(hours=1))
        self._contacts = {rules.address_key(a): d.casefold()
                          for a, d in settings.portal_organisation_contacts.items()}
        web_key = settings.channel_keys.get("web")
        self._web_key = web_key.get_secret_value() if web_key else None

    @property
    def secure(self) -> bool:
        return self.settings.portal_url.startswith("https://")

    # -- signing in ----------------------------------------------------------------------

    async def mail_link(self, email: str, *, client: str, language: str) -> None:
        """Mail a one-time link to ``email``. The answer is the same whether or not the
        address has ever written to us: the portal does not tell who is a requester."""
        if not self.settings.smtp_relay_url:
            self.metrics.portal_links.labels("no_relay").inc()
            raise NotConfigured("SMTP_RELAY_URL is not set")
        email = rules.address_key(email)
        now = utc_now()
        span = self.quota.window
        window = rules.window_start(now, span)
        counts = []
        for key in (f"address:{email}", f"client:{client}"):
            current = await self.store.count(key, window, window + 3 * span)
            previous = await self.store.counted(key, window - span)
            counts.append(rules.in_the_last_window(current, previous, now, span))
        if not rules.within_quota(counts[0], counts[1], self.quota):
            self.metrics.portal_links.labels("throttled").inc()
            raise TooManyLinks(email)
        secret = rules.new_secret()
        await self.store.add_link(rules.digest(secret), SignInLink(
            email=email, language=language, issued_at=now,
            expires_at=now + timedelta(seconds=self.settings.portal_link_ttl_s)))
        link = f"{self.settings.portal_url.rstrip('/')}/portal/link?{urlencode({'token': secret})}"
        minutes = self.settings.portal_link_ttl_s // 60
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = email
        message["Subject"] = text(language, "mail_subject")
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text(language, "mail_body").format(link=link, minutes=minutes))
        relay = urlsplit(self.settings.smtp_relay_url)
        await aiosmtplib.send(message, hostname=relay.hostname or "127.0.0.1",
                              port=relay.port or 25, timeout=30)
        self.metrics.portal_links.labels("mailed").inc()

    async def sign_in(self, token: str) -> tuple[str, PortalSession] | LinkRefused:
        """Spend a link: a new session (its secret goes in the cookie), or why not."""
        now = utc_now()
        link = await self.store.use_link(rules.digest(token), now)
        refused = rules.link_refusal(link, now)
        if refused is not None or link is None:
            self.metrics.portal_sign_ins.labels(refused.value if refused else "unknown").inc()
            return refused or LinkRefused.UNKNOWN
        self.metrics.portal_sign_ins.labels("ok").inc()
        return await self._open_session(link.email, link.language)

    async def sign_in_from_notice(self, number: str,
                                  token: str) -> tuple[str, PortalSession] | None:
        """The signed link of one of intake's notices proves the mailbox as well: a session
        for that ticket's requester, or ``None`` when intake refuses the link."""
        try:
            whose = await self.backends["intake"].call(
                "POST", "/requesters/notice-links", json={"number": number, "token": token})
        except Refused:
            self.metrics.portal_sign_ins.labels("notice_refused").inc()
            return None
        self.metrics.portal_sign_ins.labels("notice").inc()
        return await self._open_session(rules.address_key(whose["email"]),
                                        str(whose["language"]))

    async def _open_session(self, email: str, language: str) -> tuple[str, PortalSession]:
        secret = rules.new_secret()
        session = PortalSession(
            email=email, csrf=rules.new_secret(),
            language=language if language in rules.LANGUAGES else rules.DEFAULT_LANGUAGE,
            expires_at=utc_now() + timedelta(seconds=self.settings.portal_session_ttl_s))
        await self.store.add_session(rules.digest(secret), session)
        return secret, session

    async def session(self, secret: str | None) -> PortalSession | None:
        if not secret or len(secret) > 100:
            return None
        session = await self.store.session(rules.digest(secret))
        return session if rules.session_valid(session, utc_now()) else None

    async def set_language(self, secret: str, language: str) -> None:
        await self.store.set_session_language(rules.digest(secret), language)

    async def sign_out(self, secret: str) -> None:
        await self.store.end_session(rules.digest(secret))

    # -- my requests ---------------------------------------------------------------------

    def organisation_of(self, email: str) -> str | None:
        """The mail domain whose requests this address may read (a business customer's
        contact, by configuration), or ``None``."""
        return self._contacts.get(rules.address_key(email))

    async def requests(self, email: str, state: str, *,
                       organisation: bool = False) -> list[dict[str, Any]]:
        params = {"email": email, "state": state, "limit": 100}
        if organisation:
            domain = self.organisation_of(email)
            if domain is None:
                return []
            params["organisation"] = domain
        answer = await self.backends["intake"].call("GET", "/requesters/tickets",
                                                    params=params)
        return list(answer["items"])

    async def request(self, email: str, number: str) -> tuple[dict[str, Any], bool]:
        """The request as its requester sees it, and whether it is this requester's own
        (an organisation's contact reads colleagues' requests, and only reads them)."""
        try:
            return dict(await self.backends["intake"].call(
                "GET", f"/requesters/tickets/{number}", params={"email": email})), True
        except Refused as exc:
            if exc.status not in (404, 422):
                raise
            domain = self.organisation_of(email)
            if domain is None:
                raise NotYours(number) from exc
        try:
            return dict(await self.backends["intake"].call(
                "GET", f"/requesters/tickets/{number}",
                params={"email": email, "organisation": domain})), False
        except Refused as exc:
            if exc.status in (404, 422):
                raise NotYours(number) from exc
            raise

    async def ask(self, session: PortalSession, form: NewRequest, *, form_key: str) -> str:
        """Open the ticket through intake's web door, as any channel does. The form's key
        makes a second send (a double click, a reload) the same ticket."""
        if self._web_key is None:
            raise NotConfigured("CHANNEL_KEYS has no `web` key: the portal cannot open tickets")
        body: dict[str, Any] = {
            "requester": {"name": form.name, "email": session.email,
                          "language": session.language},
            "subject": form.subject, "description": form.description, "channel": "web",
            "attachments": [f.as_json() for f in form.files]}
        if form.category:
            body["category_hint"] = form.category
        if form.reach:
            body["impact"] = rules.IMPACT_OF[form.reach].value
        if form.hurry:
            body["urgency"] = rules.URGENCY_OF[form.hurry].value
        created = await self.backends["intake"].call(
            "POST", "/tickets", json=body,
            headers={"X-Api-Key": self._web_key,
                     "Idempotency-Key": f"portal-{rules.digest(session.email)[:16]}-{form_key}"})
        self.metrics.portal_requests.labels("asked").inc()
        return str(created["number"])

    async def reply(self, email: str, number: str, body: str, files: tuple[Upload, ...], *,
                    form_key: str) -> str:
        """The requester's answer; the number it landed in (a follow-up when closed)."""
        receipt = await self._own(
            "POST", f"/requesters/tickets/{number}/messages", email,
            {"body": body, "attachments": [f.as_json() for f in files], "reply_key": form_key})
        self.metrics.portal_requests.labels("replied").inc()
        return str(receipt["number"])

    async def confirm(self, email: str, number: str) -> None:
        await self._own("POST", f"/requesters/tickets/{number}/confirm", email, None)
        self.metrics.portal_requests.labels("confirmed").inc()

    async def rate(self, email: str, number: str, score: int, comment: str | None) -> None:
        await self._own("POST", f"/requesters/tickets/{number}/rating", email,
                        {"score": score, "comment": comment})
        self.metrics.portal_requests.labels("rated").inc()

    async def _own(self, method: str, path: str, email: str, body: Any) -> Any:
        try:
            return await self.backends["intake"].call(method, path, params={"email": email},
                                                      json=body)
        except Refused as exc:
            if exc.status == 404:
                raise NotYours(path) from exc
            raise

    # -- the knowledge base first --------------------------------------------------------

    @property
    def has_knowledge(self) -> bool:
        return self.backends.has("knowledge")

    async def search(self, query: str, language: str) -> list[dict[str, Any]]:
        """Published public articles for what the requester typed (their language first)."""
        if not self.has_knowledge or not query.strip():
            return []
        found = await self.backends["knowledge"].call(
            "GET", "/public/search", params={"q": query[:200], "lang": language, "limit": 5})
        hits = [h for h in found["hits"] if h["kind"] == "article"]
        return [{"id": h["id"], "title": h["title"],
                 "parts": rules.snippet_parts(h["snippet"])} for h in hits]

    async def article(self, article_id: str) -> dict[str, Any]:
        if not self.has_knowledge:
            raise NotYours(article_id)
        try:
            return dict(await self.backends["knowledge"].call(
                "GET", f"/public/articles/{article_id}"))
        except Refused as exc:
            raise NotYours(article_id) from exc

    async def solved(self, article_id: str, *, query: str | None, view_key: str) -> None:
        """"This solved it": knowledge counts a deflection (once per page view)."""
        if not self.has_knowledge:
            return
        answer = await self.backends["knowledge"].call(
            "POST", f"/public/articles/{article_id}/solved",
            json={"query": query[:200] if query else None, "token": view_key[:64]})
        if answer.get("counted"):
            self.metrics.portal_deflections.inc()
