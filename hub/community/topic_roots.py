"""Community sources against the hub's own topics under ``mqtt.topic_prefix`` (:mod:`hub.mqtt.topics`).

A community's gateway root is part of its registry entry, which cannot see the hub's settings:
so the importers (the hub's start, ``linli community import``) refuse a root that reaches into
the hub's notifications and replies, and a start on a store that holds one (imported before
this check, or under another prefix) leaves that source out and says so, instead of stopping
every community's SOS handling.

Must not import: ``hub.app``, ``hub.cli`` (the CLI imports this; ``hub.app`` costs it 0.4 s).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hub.community.model import Community, CommunitySource
from hub.errors import RegistryError
from hub.mqtt.topics import colliding


def own_topic_clashes(
    communities: Iterable[Community], *, prefix: str
) -> list[tuple[str, CommunitySource, str]]:
    """``(community code, source, first colliding filter)`` per community source whose topics
    reach into the hub's own under ``prefix`` (:mod:`hub.mqtt.topics`): the file's community
    model cannot see ``mqtt.topic_prefix``, so importers and the start ask this."""
    return [
        (community.code, source, clash[0])
        for community in communities
        for source in community.sources
        if (clash := colliding(prefix, source.as_family_source(community.code).subscriptions()))
    ]


def describe_topic_clash(code: str, source: CommunitySource, topic: str, *, prefix: str) -> str:
    return (
        f"community {code}'s {source.family.value} source subscribes to {topic}, which lies in the"
        f" hub's own topics under mqtt.topic_prefix {prefix!r} (notifications, replies): give it"
        " another base_topic"
    )


def refuse_own_topics(communities: Sequence[Community], *, prefix: str, file: str) -> None:
    """Raise :class:`RegistryError` if a community source reaches into the hub's own topics."""
    clashes = own_topic_clashes(communities, prefix=prefix)
    if clashes:
        code, source, topic = clashes[0]
        raise RegistryError(
            describe_topic_clash(code, source, topic, prefix=prefix), file=file, field="sources"
        )


def outside_own_topics(communities: Sequence[Community], *, prefix: str) -> tuple[list[Community], list[str]]:
    """The communities without their sources that reach into the hub's own topics, and why."""
    clashes = own_topic_clashes(communities, prefix=prefix)
    if not clashes:
        return list(communities), []
    bad = {(code, source) for code, source, _ in clashes}
    kept = [
        c.model_copy(update={"sources": tuple(s for s in c.sources if (c.code, s) not in bad)})
        if any(code == c.code for code, _ in bad)
        else c
        for c in communities
    ]
    return kept, [describe_topic_clash(code, source, topic, prefix=prefix) for code, source, topic in clashes]
