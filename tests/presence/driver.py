#!/usr/bin/env python3
"""Real Socket.IO clients (python-socketio) driven line by line by tests/api/presence.rs.

Each line on stdin is one JSON command; each answer is one JSON line on stdout:
{"ok": true, ...} or {"ok": false, "error": "..."}. Commands:

    {"op": "connect", "name": "a1", "url": "http://127.0.0.1:PORT", "token": "..."}
    {"op": "disconnect", "name": "a1"}
    {"op": "call", "name": "a1", "event": "set_presence", "data": {...}}  -> {"ack": ...}
    {"op": "expect", "name": "a1", "event": "presence", "match": {...}, "timeout": 5}
        -> {"payload": ...}: the first unconsumed event whose fields equal `match`
    {"op": "expect_none", "name": "a1", "event": "presence", "match": {...}, "within": 1}
        -> ok when no (further) such event arrives within `within` seconds

Waits are explicit and bounded; nothing sleeps and hopes.
"""

import json
import sys
import threading
import time

import socketio

PEERS = {}


class Peer:
    def __init__(self, name, url, token):
        self.name = name
        self.received = []  # [event, payload, consumed]
        self.changed = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._on_event)
        self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)

    def _on_event(self, event, *args):
        payload = args[0] if len(args) == 1 else list(args)
        with self.changed:
            self.received.append([event, payload, False])
            self.changed.notify_all()

    def _find(self, event, match):
        for entry in self.received:
            name, payload, consumed = entry
            if consumed or name != event:
                continue
            if isinstance(payload, dict) and all(payload.get(k) == v for k, v in match.items()):
                return entry
        return None

    def expect(self, event, match, timeout):
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                entry = self._find(event, match)
                if entry is not None:
                    entry[2] = True
                    return entry[1]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e, p) for e, p, _ in self.received if e == event]
                    raise AssertionError(
                        f"{self.name}: no {event} matching {match} within {timeout} s; "
                        f"received {event}: {seen}"
                    )
                self.changed.wait(left)

    def expect_none(self, event, match, within):
        time.sleep(within)
        with self.changed:
            entry = self._find(event, match)
        if entry is not None:
            raise AssertionError(f"{self.name}: unexpected {event}: {entry[1]}")


def handle(command):
    op = command["op"]
    name = command.get("name")
    if op == "connect":
        PEERS[name] = Peer(name, command["url"], command["token"])
        return {}
    peer = PEERS[name]
    if op == "disconnect":
        peer.sio.disconnect()
        return {}
    if op == "call":
        ack = peer.sio.call(command["event"], command.get("data"), timeout=5)
        return {"ack": ack}
    if op == "expect":
        payload = peer.expect(command["event"], command.get("match", {}), command.get("timeout", 5))
        return {"payload": payload}
    if op == "expect_none":
        peer.expect_none(command["event"], command.get("match", {}), command.get("within", 1))
        return {}
    raise ValueError(f"unknown op {op}")


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = handle(json.loads(line))
            answer["ok"] = True
        except Exception as error:  # noqa: BLE001 - every failure goes back to the test
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)
    for peer in PEERS.values():
        try:
            peer.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
