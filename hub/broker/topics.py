"""Topic names, topic filters and the subscription trie: pure, no I/O [MQTT-4.7]."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

MAX_TOPIC_BYTES = 65_535
MATCH_CACHE_SIZE = 4_096

K = TypeVar("K", bound=Hashable)


def is_valid_topic_name(topic: str) -> bool:
    """A PUBLISH topic: non-empty, no wildcards [MQTT-4.7.3-1], [MQTT-3.3.2-2], no U+0000."""
    return (
        bool(topic)
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and len(topic.encode("utf-8")) <= MAX_TOPIC_BYTES
    )


def is_valid_topic_filter(topic_filter: str) -> bool:
    """A SUBSCRIBE filter: ``#`` only as the whole last level [MQTT-4.7.1-2], ``+`` a whole level [MQTT-4.7.1-3]."""
    if not topic_filter or "\x00" in topic_filter or len(topic_filter.encode("utf-8")) > MAX_TOPIC_BYTES:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a valid filter matches a valid topic name.

    A filter starting with a wildcard does not match a topic starting with ``$`` [MQTT-4.7.2-1];
    ``a/#`` also matches ``a`` (the parent level) [MQTT-4.7.1-2].
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for index, f_level in enumerate(f_levels):
        if f_level == "#":
            return True
        if index >= len(t_levels):
            return False
        if f_level not in ("+", t_levels[index]):
            return False
    return len(f_levels) == len(t_levels)


class _Node(Generic[K]):
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.subscribers: dict[K, int] = {}


class SubscriptionTrie(Generic[K]):
    """Topic filters → subscriber keys with their granted QoS.

    ``match`` returns every key whose filters match a topic once, with the highest QoS among its
    matching filters (overlapping subscriptions deliver one copy [MQTT-3.3.5-1]). Results are cached
    per topic; any add/remove clears the cache.
    """

    __slots__ = ("_cache", "_count", "_root")

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        self._cache: dict[str, tuple[tuple[K, int], ...]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, topic_filter: str, key: K, qos: int) -> bool:
        """Subscribe ``key``; returns True if it replaced an existing subscription [MQTT-3.8.4-3]."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        replaced = key in node.subscribers
        node.subscribers[key] = qos
        if not replaced:
            self._count += 1
        self._cache.clear()
        return replaced

    def remove(self, topic_filter: str, key: K) -> bool:
        """Unsubscribe ``key``; returns True if it was subscribed. Empty branches are pruned."""
        path: list[tuple[_Node[K], str]] = []
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if node.subscribers.pop(key, None) is None:
            return False
        self._count -= 1
        self._cache.clear()
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.subscribers or child.children:
                break
            del parent.children[level]
        return True

    def match(self, topic: str) -> tuple[tuple[K, int], ...]:
        """``(key, max granted QoS)`` for every subscriber of ``topic`` (a valid topic name)."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        found: dict[K, int] = {}
        levels = topic.split("/")
        depth = len(levels)
        dollar = topic.startswith("$")
        stack: list[tuple[_Node[K], int]] = [(self._root, 0)]
        while stack:
            node, index = stack.pop()
            children = node.children
            wildcard_ok = index > 0 or not dollar  # [MQTT-4.7.2-1]
            if wildcard_ok:
                hash_node = children.get("#")
                if hash_node is not None:
                    _merge(found, hash_node.subscribers)
            if index == depth:
                _merge(found, node.subscribers)
                continue
            if wildcard_ok:
                plus = children.get("+")
                if plus is not None:
                    stack.append((plus, index + 1))
            exact = children.get(levels[index])
            if exact is not None:
                stack.append((exact, index + 1))
        result = tuple(found.items())
        if len(self._cache) >= MATCH_CACHE_SIZE:
            self._cache.clear()
        self._cache[topic] = result
        return result


def _merge(found: dict[K, int], subscribers: dict[K, int]) -> None:
    for key, qos in subscribers.items():
        previous = found.get(key)
        if previous is None or qos > previous:
            found[key] = qos
