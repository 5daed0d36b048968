"""The hub's own topics under ``mqtt.topic_prefix``, and which gateway roots would collide with them.

The hub publishes notifications and reads workers' replies under the prefix (docs/topics.md):

* ``{prefix}/{community}/workers/{person}/notifications`` and ``…/replies``;
* ``{prefix}/command-centre/notifications``.

A gateway root that reaches into that tree is refused, wherever it is configured (a hub-wide
``sources`` entry or a community's own): the hub would subscribe to its own notifications and
read them as sensor messages, and ``linli broker config`` would grant that gateway's credential
the right to write notifications to every worker's phone (found in review: a community whose
Zigbee2MQTT ``base_topic`` was ``linli``). Native events (``{prefix}/{community}/devices/…``)
share the prefix on purpose and do not collide.

Pure: no I/O. Must not import any stage (this is read by :mod:`hub.config`).
"""

from __future__ import annotations

from collections.abc import Iterable

#: A root's levels as configured (``mqtt.topic_prefix``, a source's ``base_topic``): no wildcards,
#: no empty level, no leading ``$`` (the broker's own tree [MQTT-4.7.2]).
TOPIC_LEVELS = r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"
#: The level under a community that holds its people's notification and reply topics.
WORKERS = "workers"
#: The command centre's (指挥中心) level right under the prefix.
COMMAND_CENTRE = "command-centre"


def reserved_filters(prefix: str) -> tuple[str, ...]:
    """Exactly the topics the hub publishes or takes replies on: no wider, or a prefix of several
    levels over the native root (``linli/site1`` beside ``linli/+/devices/+/events``) would be
    refused for an overlap no topic has (found in review)."""
    return (
        f"{prefix}/+/{WORKERS}/+/notifications",
        f"{prefix}/+/{WORKERS}/+/replies",
        f"{prefix}/{COMMAND_CENTRE}/notifications",
    )


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic name matches both valid filters [MQTT-4.7.1].

    Level by level: ``#`` matches the rest (and its parent level, [MQTT-4.7.1-2]), ``+`` any one
    level, anything else only itself.
    """
    a, b = first.split("/"), second.split("/")
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        if left == "#" or right == "#":
            return True  # also where the other ended: ``x/#`` matches ``x``
        if left is None or right is None:
            return False  # one ended, and the other goes on with a level that is not "#"
        if left != right and "+" not in (left, right):
            return False
    return True


def colliding(prefix: str, filters: Iterable[str]) -> list[str]:
    """Those of ``filters`` that some topic of the hub's own (:func:`reserved_filters`) matches."""
    reserved = reserved_filters(prefix)
    return [f for f in filters if any(filters_overlap(f, r) for r in reserved)]
