"""The dead-letter queues, for the SRE on call: what is parked where and why, and sending
it back once the cause is fixed.

    python -m sportello_runtime.dlq list
    python -m sportello_runtime.dlq show routing [--limit 20]
    python -m sportello_runtime.dlq replay routing (--event-id ID ... | --type T | --all)
    python -m sportello_runtime.dlq purge routing [--yes]

``AMQP_URL`` and ``BUS_NAMESPACE`` say which broker and which deployment (as for the
services). A replayed message goes to the service's work queue with its event id
unchanged, so the consumers' dedupe still holds, and with its attempts counted afresh.
Messages not replayed stay parked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from sportello_runtime.bus import ATTEMPT_HEADER, ERROR_HEADER, REASON_HEADER

SERVICES = ("intake", "routing", "sla", "gateway", "knowledge", "analytics")
PARK_HEADERS = (ATTEMPT_HEADER, ERROR_HEADER, REASON_HEADER, "x-sportello-consumer",
                "x-sportello-failed-at")
"""What parking added: taken off a replayed message, so its attempts start again."""


@dataclass(frozen=True)
class Parked:
    """A parked message as an operator reads it (no payload: it may hold ticket content)."""

    event_id: str
    event_type: str
    ticket_id: str | None
    reason: str
    error: str
    failed_at: str
    attempts: int

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> Parked:
        headers = message.headers or {}
        try:
            body = json.loads(message.body)
            ticket_id = body.get("ticket_id") if isinstance(body, dict) else None
            event_type = body.get("type", "?") if isinstance(body, dict) else "?"
        except ValueError:
            ticket_id, event_type = None, "(not JSON)"
        return cls(event_id=str(message.message_id or "?"), event_type=str(event_type),
                   ticket_id=ticket_id, reason=str(headers.get(REASON_HEADER, "")),
                   error=str(headers.get(ERROR_HEADER, "")).strip().splitlines()[-1:][0]
                   if headers.get(ERROR_HEADER) else "",
                   failed_at=str(headers.get("x-sportello-failed-at", "")),
                   attempts=int(str(headers.get(ATTEMPT_HEADER, 0))))


def dead_letter_queue(namespace: str, service: str) -> str:
    return f"{namespace}.{service}.dlq"


@contextlib.asynccontextmanager
async def _broker(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


async def _count(channel: AbstractChannel, queue_name: str) -> int | None:
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return None
    count = queue.declaration_result.message_count
    return int(count) if count is not None else 0


async def counts(amqp_url: str, namespace: str,
                 services: Sequence[str] = SERVICES) -> dict[str, int | None]:
    """Messages parked per service; ``None`` where the service has no queue here."""
    answer: dict[str, int | None] = {}
    async with _broker(amqp_url) as connection:
        for service in services:
            channel = await connection.channel()
            answer[service] = await _count(channel, dead_letter_queue(namespace, service))
            if not channel.is_closed:
                await channel.close()
    return answer


async def _taken(channel: AbstractChannel, queue_name: str,
                 limit: int | None) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` messages, unacknowledged: they go back when the channel closes or
    when nacked, unless acked."""
    queue = await channel.declare_queue(queue_name, passive=True)
    total = queue.declaration_result.message_count or 0
    taken: list[AbstractIncomingMessage] = []
    while len(taken) < min(total, limit if limit is not None else total):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(message)
    return taken


async def show(amqp_url: str, namespace: str, service: str, limit: int = 20) -> list[Parked]:
    """The first ``limit`` parked messages; all of them stay parked."""
    async with _broker(amqp_url) as connection:
        channel = await connection.channel()
        taken = await _taken(channel, dead_letter_queue(namespace, service), limit)
        parked = [Parked.of(m) for m in taken]
        for message in taken:
            await message.nack(requeue=True)
        return parked


async def replay(amqp_url: str, namespace: str, service: str,
                 chosen: Callable[[Parked], bool]) -> list[Parked]:
    """Send the chosen parked messages back to the service's work queue (confirmed by the
    broker before each is taken off the dead-letter queue); the others stay."""
    replayed: list[Parked] = []
    async with _broker(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        taken = await _taken(channel, dead_letter_queue(namespace, service), None)
        for message in taken:
            parked = Parked.of(message)
            if not chosen(parked):
                continue
            headers = {k: v for k, v in (message.headers or {}).items()
                       if k not in PARK_HEADERS}
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, headers=headers,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 content_type=message.content_type,
                                 message_id=message.message_id,
                                 correlation_id=message.correlation_id, type=message.type,
                                 app_id=message.app_id, timestamp=message.timestamp),
                routing_key=f"{namespace}.{service}")
            await message.ack()
            replayed.append(parked)
        for message in taken:
            if not message.processed:
                await message.nack(requeue=True)
    return replayed


async def purge(amqp_url: str, namespace: str, service: str) -> int:
    async with _broker(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(dead_letter_queue(namespace, service),
                                            passive=True)
        result: Any = await queue.purge()
        return int(getattr(result, "message_count", 0) or 0)


def _choice(args: argparse.Namespace) -> Callable[[Parked], bool]:
    if args.all:
        return lambda _: True
    if args.type:
        return lambda p: p.event_type == args.type
    ids = set(args.event_id or [])
    return lambda p: p.event_id in ids


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sportello_runtime.dlq",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default=os.environ.get(
        "AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--namespace", default=os.environ.get("BUS_NAMESPACE", "sportello"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="messages parked per service")
    show_cmd = commands.add_parser("show", help="a service's parked messages and why")
    show_cmd.add_argument("service")
    show_cmd.add_argument("--limit", type=int, default=20)
    replay_cmd = commands.add_parser("replay", help="send parked messages back")
    replay_cmd.add_argument("service")
    which = replay_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--event-id", action="append")
    which.add_argument("--type")
    which.add_argument("--all", action="store_true")
    purge_cmd = commands.add_parser("purge", help="drop every parked message of a service")
    purge_cmd.add_argument("service")
    purge_cmd.add_argument("--yes", action="store_true", help="do not ask")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        for service, count in (await counts(args.amqp_url, args.namespace)).items():
            print(f"{service:<10} {'-' if count is None else count}")
    elif args.command == "show":
        for p in await show(args.amqp_url, args.namespace, args.service, args.limit):
            print(f"{p.event_id}  {p.event_type}  ticket {p.ticket_id or '-'}  "
                  f"attempts {p.attempts}  at {p.failed_at}\n    {p.reason}\n    {p.error}")
    elif args.command == "replay":
        replayed = await replay(args.amqp_url, args.namespace, args.service, _choice(args))
        print(f"replayed {len(replayed)} to {args.namespace}.{args.service}")
    elif args.command == "purge":
        print(f"dropped {await purge(args.amqp_url, args.namespace, args.service)}")
    return 0


def main() -> None:
    args = _arguments(sys.argv[1:])
    if args.command == "purge" and not args.yes:
        queue = dead_letter_queue(args.namespace, args.service)
        if input(f"drop every message of {queue}? [y/N] ").strip().lower() != "y":
            print("nothing dropped")
            sys.exit(1)
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
