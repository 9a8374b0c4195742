#!/usr/bin/env python3
"""Socket.IO scenarios for chatd, driven by a real client (python-socketio).

Run by tests/api/realtime.rs as `python3 tests/realtime/scenarios.py <scenario>` with a JSON config on
stdin (written by the Rust test, which has started the server and created the sessions and
conversations):

    {"url": "http://127.0.0.1:PORT", "secret": "<app secret>", "backend": "sqlite",
     "user": {"id": 1, "token": "...", "identifier": "user_1", "conversation_id": 7,
              "message_id": 11},
     "admin": {"id": 2, "token": "...", "identifier": "admin_2"}, ...}

Exit status 0 when the scenario holds; otherwise a failure message, the steps taken and every
event each socket received are printed to stderr and the exit status is 1.

Waits are explicit: a server event is awaited with a timeout (never sleep-and-hope); "nothing
arrives" is checked by waiting QUIET seconds for it.
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import re
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

import requests
import socketio

TIMEOUT = 5.0  # an ack or an expected server event
QUIET = 1.0  # how long "nothing more arrives" is watched
MAX_ID = 2**53

MESSAGE_KEYS = [
    "id",
    "conversation_id",
    "sender_role",
    "sender_identifier",
    "message_type",
    "content",
    "message",
    "file_id",
    "file_url",
    "file_name",
    "file_size",
    "mime_type",
    "width",
    "height",
    "client_msg_id",
    "is_read",
    "timestamp",
]
ERROR_CODES = {
    "VALIDATION_ERROR", "EMPTY_MESSAGE", "INVALID_SIGNATURE", "STALE_TIMESTAMP", "REPLAYED_REQUEST", "UNAUTHORIZED",
    "FORBIDDEN", "NOT_FOUND", "CONFLICT", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE",
    "RATE_LIMITED", "UNAVAILABLE", "INTERNAL", "REQUEST_TIMEOUT",
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

STEPS = []
PEERS = []


class Failure(Exception):
    pass


def step(text):
    line = f"[{time.monotonic() - START:7.3f}] {text}"
    STEPS.append(line)
    print(line, flush=True)


def check(condition, message):
    if not condition:
        raise Failure(message)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# ---------------------------------------------------------------------------------------------
# Shapes


def check_message(msg, what, **expected):
    check(isinstance(msg, dict), f"{what}: a message must be an object, got {msg!r}")
    missing = [k for k in MESSAGE_KEYS if k not in msg]
    check(not missing, f"{what}: message lacks {missing}: {msg!r}")
    check(
        isinstance(msg["id"], int) and 0 < msg["id"] < MAX_ID,
        f"{what}: id must be a positive integer below 2^53: {msg!r}",
    )
    check(
        isinstance(msg["conversation_id"], int) and 0 < msg["conversation_id"] < MAX_ID,
        f"{what}: conversation_id must be a positive integer: {msg!r}",
    )
    check(msg["content"] == msg["message"], f"{what}: content != message: {msg!r}")
    check(isinstance(msg["is_read"], bool), f"{what}: is_read must be a boolean: {msg!r}")
    check(
        isinstance(msg["timestamp"], str) and TIMESTAMP.match(msg["timestamp"]),
        f"{what}: timestamp must be YYYY-MM-DDTHH:MM:SSZ: {msg!r}",
    )
    for key, value in expected.items():
        check(
            msg.get(key) == value,
            f"{what}: expected {key} = {value!r}, got {msg.get(key)!r} in {msg!r}",
        )
    return msg


def success_data(ack, what):
    check(isinstance(ack, dict), f"{what}: the ack must be an envelope object, got {ack!r}")
    check(ack.get("status") == "success", f"{what}: expected a success envelope, got {ack!r}")
    check("data" in ack, f"{what}: the success envelope has no data: {ack!r}")
    return ack["data"]


def check_error(ack, codes, what):
    if isinstance(codes, str):
        codes = (codes,)
    check(isinstance(ack, dict), f"{what}: the ack must be an envelope object, got {ack!r}")
    check(ack.get("status") == "error", f"{what}: expected an error envelope, got {ack!r}")
    check(
        ack.get("error_code") in codes,
        f"{what}: expected error_code in {list(codes)}, got {ack!r}",
    )
    check(
        isinstance(ack.get("message"), str) and ack["message"],
        f"{what}: the error envelope needs a human message: {ack!r}",
    )
    return ack


# ---------------------------------------------------------------------------------------------
# REST (signed as the contract's "Authentication" 1 and 2 say)


def signature(secret, timestamp, method, path_and_query, body):
    """X-Signature as the contract's "Authentication" 1 (and docs/ios.md) defines it."""
    to_sign = "\n".join([timestamp, method, path_and_query, hashlib.sha256(body).hexdigest()])
    return hmac.new(secret, to_sign.encode(), hashlib.sha256).hexdigest()


class Rest:
    def __init__(self, cfg):
        self.url = cfg["url"]
        self.secret = cfg["secret"].encode()
        self.http = requests.Session()

    def call(self, method, path_and_query, token, body=None):
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        timestamp = str(int(time.time() * 1000))
        headers = {
            "X-Timestamp": timestamp,
            "X-Signature": signature(self.secret, timestamp, method, path_and_query, raw),
            "Authorization": f"Bearer {token}",
        }
        if raw:
            headers["Content-Type"] = "application/json"
        response = self.http.request(
            method, self.url + path_and_query, data=raw or None, headers=headers, timeout=10
        )
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return response.status_code, payload

    def ok(self, method, path_and_query, token, body=None, statuses=(200, 201)):
        status, payload = self.call(method, path_and_query, token, body)
        check(
            status in statuses,
            f"REST {method} {path_and_query} {body!r}: expected {statuses}, got {status} {payload!r}",
        )
        return success_data(payload, f"REST {method} {path_and_query}")

    def send(self, token, conversation_id, content, client_msg_id=None):
        body = {"content": content, "conversation_id": conversation_id}
        if client_msg_id is not None:
            body["client_msg_id"] = client_msg_id
        return self.ok("POST", "/api/chat/messages", token, body, statuses=(201,))


# ---------------------------------------------------------------------------------------------
# A Socket.IO client that records what it receives


class Peer:
    def __init__(self, cfg, name, token, transports=("websocket",)):
        self.cfg = cfg
        self.name = name
        self.token = token
        self.transports = list(transports)
        self.log = []  # (time, event, payload) of everything received, for the failure report
        self.queues = {}
        self.lock = threading.Lock()
        self.connect_errors = []
        self.disconnected = threading.Event()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._on_event)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)
        PEERS.append(self)

    # handlers (run on the client's reader thread)

    def _queue(self, event):
        with self.lock:
            return self.queues.setdefault(event, queue.Queue())

    def _on_event(self, event, *args):
        payload = args[0] if len(args) == 1 else list(args)
        self.log.append((time.monotonic() - START, event, payload))
        self._queue(event).put(payload)

    def _on_connect_error(self, *args):
        payload = args[0] if len(args) == 1 else list(args)
        self.log.append((time.monotonic() - START, "connect_error", payload))
        self.connect_errors.append(payload)

    def _on_disconnect(self, *args):
        self.log.append((time.monotonic() - START, "disconnect", list(args)))
        self.disconnected.set()

    # actions

    def connect(self, auth="token", headers=None, query=None):
        """`auth` is the handshake's auth object ("token": this peer's); `headers` go on the
        polling requests and the websocket upgrade; `query` onto the connection URL."""
        self.disconnected.clear()
        url = self.cfg["url"]
        if query:
            url += "?" + urllib.parse.urlencode(query)
        self.sio.connect(
            url,
            auth={"token": self.token} if auth == "token" else auth,
            headers=headers or {},
            transports=self.transports,
            wait_timeout=TIMEOUT,
        )
        check(
            self.sio.transport() in self.transports,
            f"{self.name}: connected over {self.sio.transport()}, not {self.transports}",
        )
        step(f"{self.name} connected over {self.sio.transport()} (sid {self.sio.sid})")
        return self

    def close(self):
        if not self.sio.connected:
            return
        if self.sio.transport() == "polling":
            # python-engineio's disconnect joins its pending long-poll GET, which the server may
            # answer only at its next ping (pingInterval, 25 s): leave the namespace and close
            # the session without waiting for that request.
            for namespace in list(self.sio.namespaces):
                self.sio._send_packet(
                    self.sio.packet_class(socketio.packet.DISCONNECT, namespace=namespace)
                )
            self.sio.eio.disconnect(abort=True)
        else:
            self.sio.disconnect()

    def call(self, event, data=None, what=None):
        what = what or f"{self.name} {event}"
        try:
            if data is None:
                ack = self.sio.call(event, timeout=TIMEOUT)
            else:
                ack = self.sio.call(event, data, timeout=TIMEOUT)
        except socketio.exceptions.TimeoutError:
            raise Failure(f"{what}: no ack within {TIMEOUT} s (sent {shorten(data)})") from None
        return ack

    def ok(self, event, data=None, what=None):
        return success_data(self.call(event, data, what), what or f"{self.name} {event}")

    def emit(self, event, data):
        self.sio.emit(event, data)

    def expect(self, event, what=None, timeout=TIMEOUT):
        """The next `event` this socket received (waiting up to `timeout`)."""
        try:
            return self._queue(event).get(timeout=timeout)
        except queue.Empty:
            raise Failure(
                f"{what or self.name}: no {event} arrived within {timeout} s on {self.name}"
            ) from None

    def expect_none(self, event, what=None, within=QUIET):
        """No (further) `event` arrives on this socket within `within` seconds."""
        try:
            payload = self._queue(event).get(timeout=within)
        except queue.Empty:
            return
        raise Failure(f"{what or self.name}: unexpected {event} on {self.name}: {payload!r}")

    def received(self):
        return [(event, payload) for (_, event, payload) in self.log]


class RawSocket:
    """A websocket Socket.IO client on a plain TCP socket, so that the test decides when it
    reads: it can stop reading entirely, as a frozen app does."""

    def __init__(self, cfg, name, token):
        self.name = name
        host, port = cfg["url"].removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window, so that what the server sends piles up on its side.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.pending = b""
        while b"\r\n\r\n" not in self.pending:
            self._fill()
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        check(head.startswith(b"HTTP/1.1 101"), f"{name}: no websocket upgrade: {head!r}")
        opened = self.next_text()
        check(opened.startswith("0{"), f"{name}: expected the engine.io open packet: {opened!r}")
        self.send_text("40" + json.dumps({"token": token}))
        connected = self.next_text()
        check(connected.startswith("40{"), f"{name}: expected a connect packet: {connected!r}")
        self.sid = json.loads(connected[2:]).get("sid")

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.pending += chunk

    def _take(self, n):
        while len(self.pending) < n:
            self._fill()
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def next_frame(self):
        """(opcode, payload) of the next frame; EOFError when the server closed the socket."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._take(8))[0]
        return first & 0x0F, self._take(length)

    def next_text(self):
        """The next engine.io packet, answering pings on the way."""
        while True:
            opcode, payload = self.next_frame()
            if opcode == 8:
                raise EOFError
            if opcode != 1:
                continue
            text = payload.decode()
            if text == "2":
                self.send_text("3")
                continue
            return text

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        if len(data) < 126:
            header = struct.pack(">BB", 0x81, 0x80 | len(data))
        else:
            header = struct.pack(">BBH", 0x81, 0x80 | 126, len(data))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def close(self):
        self.sock.close()


def shorten(value, limit=300):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def join(peer, conversation_id, since=None):
    data = {"conversation_id": conversation_id}
    if since is not None:
        data["since"] = since
    joined = peer.ok("join_conversation", data, f"{peer.name} join_conversation {data}")
    check(isinstance(joined, dict), f"{peer.name} join: data must be an object: {joined!r}")
    check(
        joined.get("conversation_id") == conversation_id,
        f"{peer.name} join: data.conversation_id must be {conversation_id}: {joined!r}",
    )
    check(
        isinstance(joined.get("messages"), list),
        f"{peer.name} join: data.messages must be a list: {joined!r}",
    )
    for message in joined["messages"]:
        check_message(message, f"{peer.name} join message", conversation_id=conversation_id)
    step(f"{peer.name} joined {conversation_id} ({len(joined['messages'])} messages)")
    return joined


def send(peer, conversation_id, content, client_msg_id=None, what=None):
    data = {
        "conversation_id": conversation_id,
        "message_type": "text",
        "content": content,
        "file_id": None,
        "client_msg_id": client_msg_id or unique("cm"),
    }
    return peer.ok("send_message", data, what or f"{peer.name} send_message")


# ---------------------------------------------------------------------------------------------
# Scenarios


def scenario_bad_token(cfg):
    """A bad token (or none) is refused at connect with UNAUTHORIZED; a good one connects."""
    user = cfg["user"]
    for transports in (["websocket"], ["polling"]):
        good = Peer(cfg, f"good-{transports[0]}", user["token"], transports).connect()
        good.close()
        refusals = [
            ("unknown token", {"token": "not-a-real-token-" + uuid.uuid4().hex}),
            ("empty token", {"token": ""}),
            ("no auth", None),
        ]
        # Over polling the client waits for its pending long-poll after a refusal (up to the
        # server's pingInterval), so one refusal there is enough.
        for label, auth in refusals if transports == ["websocket"] else refusals[:1]:
            peer = Peer(cfg, f"{label} ({transports[0]})", "unused", transports)
            try:
                peer.connect(auth=auth)
            except socketio.exceptions.ConnectionError as error:
                step(f"{peer.name}: refused ({error})")
            else:
                peer.close()
                raise Failure(f"{peer.name}: the connect was accepted")
            check(
                peer.connect_errors,
                f"{peer.name}: refused without a connect_error packet (server down?)",
            )
            data = peer.connect_errors[0]
            check(
                isinstance(data, dict)
                and data.get("code") == "UNAUTHORIZED"
                and isinstance(data.get("message"), str)
                and data["message"],
                f"{peer.name}: the connect_error data must be {{code: UNAUTHORIZED, message}}: "
                f"{data!r}",
            )
            check(not peer.sio.connected, f"{peer.name}: still connected after the refusal")


def scenario_connect_styles(cfg):
    """The session token is taken from the handshake's auth, else an Authorization: Bearer
    header, else the token query parameter (what Socket.IO-Client-Swift sends for
    connect(withPayload:), .extraHeaders and .connectParams), over either transport; a bad
    token in any of them is refused alike; auth wins over the others."""
    user = cfg["user"]
    conversation = user["conversation_id"]
    token = user["token"]
    bad = "not-a-real-token-" + uuid.uuid4().hex
    styles = [
        ("Authorization header", dict(auth=None, headers={"Authorization": f"Bearer {token}"})),
        ("token query parameter", dict(auth=None, query={"token": token})),
        ("auth over a bad header", dict(auth="token", headers={"Authorization": f"Bearer {bad}"})),
    ]
    for transports in (["websocket"], ["polling"]):
        for label, how in styles:
            peer = Peer(cfg, f"{label} ({transports[0]})", token, transports).connect(**how)
            joined = join(peer, conversation)
            check(joined["messages"], f"{peer.name}: the join shows the conversation's messages")
            peer.close()
    for label, how in [
        ("a bad Authorization header", dict(auth=None, headers={"Authorization": f"Bearer {bad}"})),
        ("a bad token query parameter", dict(auth=None, query={"token": bad})),
    ]:
        peer = Peer(cfg, label, "unused")
        try:
            peer.connect(**how)
        except socketio.exceptions.ConnectionError as error:
            step(f"{peer.name}: refused ({error})")
        else:
            peer.close()
            raise Failure(f"{peer.name}: the connect was accepted")
        check(peer.connect_errors and peer.connect_errors[0].get("code") == "UNAUTHORIZED",
              f"{peer.name}: refused with UNAUTHORIZED: {peer.connect_errors!r}")


def scenario_contract_events(cfg):
    """Every client and server event, in the contract's shapes."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user", user["token"]).connect()
    a = Peer(cfg, "admin", admin["token"]).connect()

    joined = join(u, conversation)
    ids = [m["id"] for m in joined["messages"]]
    check(
        user["message_id"] in ids,
        f"join: the initial message {user['message_id']} is missing from {joined['messages']!r}",
    )
    check(ids == sorted(ids), f"join: messages must be oldest first: {ids}")

    # send_message: the ack is the stored message; new_message to the sender and every admin.
    cm1 = unique("cm1")
    content = "Hello from the socket " + cm1
    m1 = send(u, conversation, content, cm1)
    check_message(
        m1,
        "send_message ack",
        conversation_id=conversation,
        sender_role="user",
        sender_identifier=user["identifier"],
        message_type="text",
        content=content,
        message=content,
        file_id=None,
        file_url=None,
        client_msg_id=cm1,
        is_read=False,
    )
    step(f"user sent message {m1['id']}")
    for peer in (u, a):
        got = peer.expect("new_message", f"new_message for {m1['id']}")
        check_message(got, f"new_message on {peer.name}")
        check(got == m1, f"new_message on {peer.name} differs from the ack: {got!r} vs {m1!r}")
    for peer in (u, a):
        peer.expect_none("new_message", "the first new_message must arrive once")
    step("new_message reached user and admin once each")

    # The same client_msg_id again: the same message, no second new_message.
    again = send(u, conversation, content, cm1, "send_message retry")
    check_message(again, "send_message retry ack")
    check(again["id"] == m1["id"], f"retry: expected the original id {m1['id']}, got {again!r}")
    for peer in (u, a):
        peer.expect_none("new_message", "a retried client_msg_id must not broadcast again")
    step("a retried client_msg_id returned the original and broadcast nothing")

    # The admin joins too: still each event once on the admin socket.
    join(a, conversation)
    m2 = send(u, conversation, "Second message " + unique("c"))
    for peer in (u, a):
        got = peer.expect("new_message", f"new_message for {m2['id']}")
        check(got == m2, f"new_message on {peer.name} differs from the ack: {got!r} vs {m2!r}")
    for peer in (u, a):
        peer.expect_none("new_message", "a joined admin must still get new_message once")
    step("with the admin joined, new_message still arrives once per socket")

    # Typing: to the others in the room, not back to the sender.
    for event, typing in (("typing_start", True), ("typing_stop", False)):
        u.ok(event, {"conversation_id": conversation})
        got = a.expect("typing_indicator", f"{event} -> typing_indicator")
        expected = {
            "conversation_id": conversation,
            "sender_role": "user",
            "typing": typing,
            "sender_identifier": user["identifier"],
        }
        check(got == expected, f"{event}: expected typing_indicator {expected!r}, got {got!r}")
        a.expect_none("typing_indicator", f"{event}: one typing_indicator")
        u.expect_none("typing_indicator", f"{event}: the sender must not get its own indicator")
        step(f"{event} reached the admin as typing={typing}")

    # mark_read by the admin: ack marked_read, message_read to the user.
    read = a.ok("mark_read", {"conversation_id": conversation, "message_ids": [m1["id"]]})
    check(read == {"marked_read": 1}, f"mark_read: expected data {{'marked_read': 1}}, got {read!r}")
    got = u.expect("message_read", "mark_read -> message_read")
    expected = {"conversation_id": conversation, "message_ids": [m1["id"]], "read_by": "admin"}
    check(got == expected, f"message_read: expected {expected!r}, got {got!r}")
    u.expect_none("message_read", "message_read once")
    step("mark_read acked 1 and the user got message_read")

    # Assignment over REST reaches the admin socket. Automatic assignment may already have given
    # the conversation to this admin when their socket came online (assigned_by "system"), so
    # the admin hands it to a colleague: a change either way.
    colleague = admin["id"] + 1
    rest.ok("PUT", f"/api/chat/conversations/{conversation}/assign", admin["token"],
            {"admin_id": colleague})
    got = a.expect("conversation_assigned", "assign -> conversation_assigned")
    while isinstance(got, dict) and got.get("assigned_by") == "system":
        step(f"an automatic assignment arrived first: {got!r}")
        got = a.expect("conversation_assigned", "assign -> conversation_assigned")
    check(isinstance(got, dict), f"conversation_assigned must be an object: {got!r}")
    check(
        got.get("conversation_id") == conversation and got.get("admin_id") == colleague,
        f"conversation_assigned: expected conversation {conversation}, admin {colleague}: {got!r}",
    )
    check(
        "assigned_by" in got and got["assigned_by"] in (admin["id"], admin["identifier"], "admin"),
        f"conversation_assigned: assigned_by must name the assigning admin: {got!r}",
    )
    a.expect_none("conversation_assigned", "conversation_assigned once")
    step("the assignment reached the admin socket")

    # Closing over REST reaches both.
    rest.ok("PUT", f"/api/chat/conversations/{conversation}/status", admin["token"],
            {"status": "closed"})
    expected = {"conversation_id": conversation, "status": "closed", "changed_by": "admin"}
    for peer in (u, a):
        got = peer.expect("conversation_status", "close -> conversation_status")
        check(got == expected, f"conversation_status on {peer.name}: expected {expected!r}, got {got!r}")
    for peer in (u, a):
        peer.expect_none("conversation_status", "conversation_status once")
    step("the close reached user and admin")

    # The admin reopens it (closed -> active is the admin's), then the user leaves the room.
    rest.ok("PUT", f"/api/chat/conversations/{conversation}/status", admin["token"],
            {"status": "active"})
    expected = {"conversation_id": conversation, "status": "active", "changed_by": "admin"}
    for peer in (u, a):
        got = peer.expect("conversation_status", "reopen -> conversation_status")
        check(got == expected, f"conversation_status on {peer.name}: expected {expected!r}, got {got!r}")

    left = u.call("leave_conversation", {"conversation_id": conversation})
    success_data(left, "leave_conversation")
    step("the user left the room")
    reply = rest.send(admin["token"], conversation, "Are you still there? " + unique("c"))
    got = a.expect("new_message", "admin REST reply -> admin socket")
    check(got.get("id") == reply["id"], f"admin socket: expected message {reply['id']}: {got!r}")
    u.expect_none("new_message", "after leave_conversation the user must get nothing")
    a.expect_none("new_message", "the admin's reply once")
    step("after leaving, the user got nothing; the admin got the reply once")
    u.close()
    a.close()


def scenario_isolation(cfg):
    """One user's conversation stays closed to another user, in both directions."""
    a_cfg, b_cfg, admin = cfg["user"], cfg["other"], cfg["admin"]
    ca, cb = a_cfg["conversation_id"], b_cfg["conversation_id"]
    a = Peer(cfg, "user A", a_cfg["token"]).connect()
    b = Peer(cfg, "user B", b_cfg["token"]).connect()
    staff = Peer(cfg, "admin", admin["token"]).connect()
    join(a, ca)
    join(b, cb)

    check_error(b.call("join_conversation", {"conversation_id": ca}), "FORBIDDEN",
                "B join_conversation on A's conversation")
    check_error(
        b.call("send_message", {"conversation_id": ca, "message_type": "text",
                                "content": "intrusion", "file_id": None,
                                "client_msg_id": unique("cm")}),
        "FORBIDDEN", "B send_message to A's conversation")
    check_error(b.call("typing_start", {"conversation_id": ca}), "FORBIDDEN",
                "B typing_start on A's conversation")
    check_error(b.call("typing_stop", {"conversation_id": ca}), "FORBIDDEN",
                "B typing_stop on A's conversation")
    check_error(b.call("mark_read", {"conversation_id": ca, "message_ids": [a_cfg["message_id"]]}),
                "FORBIDDEN", "B mark_read on A's conversation")
    step("B's joins, sends, typing and reads on A's conversation were FORBIDDEN")

    # Failures of events sent without an ack come back as an `error` event.
    for event, data in [
        ("send_message", {"conversation_id": ca, "message_type": "text", "content": "no ack",
                          "file_id": None, "client_msg_id": unique("cm")}),
        ("join_conversation", {"conversation_id": ca}),
    ]:
        b.emit(event, data)
        got = b.expect("error", f"{event} without an ack -> error event")
        check(isinstance(got, dict) and got.get("code") == "FORBIDDEN"
              and isinstance(got.get("message"), str) and got["message"],
              f"{event} without an ack: expected an error event {{code: FORBIDDEN, message}}, got {got!r}")
        b.expect_none("error", f"{event}: one error event")
    step("events without an ack failed with an error event {code: FORBIDDEN}")

    # A's traffic reaches A and the admin, never B.
    ma = send(a, ca, "Private to A " + unique("c"))
    a.ok("typing_start", {"conversation_id": ca})
    got = a.expect("new_message", "A's own new_message")
    check(got.get("id") == ma["id"], f"A: expected new_message {ma['id']}: {got!r}")
    got = staff.expect("new_message", "A's message on the admin socket")
    check(got.get("id") == ma["id"], f"admin: expected new_message {ma['id']}: {got!r}")
    a.ok("typing_stop", {"conversation_id": ca})

    # B's traffic reaches B and the admin, never A.
    mb = send(b, cb, "Private to B " + unique("c"))
    got = b.expect("new_message", "B's own new_message")
    check(got.get("id") == mb["id"], f"B: expected new_message {mb['id']}: {got!r}")
    got = staff.expect("new_message", "B's message on the admin socket")
    check(got.get("id") == mb["id"], f"admin: expected new_message {mb['id']}: {got!r}")

    time.sleep(QUIET)  # let anything misrouted arrive before looking at what each side received
    leaked_to_b = [(e, p) for (e, p) in b.received()
                   if isinstance(p, dict) and p.get("conversation_id") == ca]
    check(not leaked_to_b, f"A's events reached B: {leaked_to_b!r}")
    leaked_to_a = [(e, p) for (e, p) in a.received()
                   if isinstance(p, dict) and p.get("conversation_id") == cb]
    check(not leaked_to_a, f"B's events reached A: {leaked_to_a!r}")
    # Automatic assignment may give B's conversation to the admin whose socket came online; B,
    # in its room, hears of that (assigned_by "system"), which is B's own traffic.
    own = [e for (e, p) in b.received()
           if not (e == "conversation_assigned" and isinstance(p, dict)
                   and p.get("conversation_id") == cb and p.get("assigned_by") == "system")]
    check(
        own == ["error", "error", "new_message"],
        f"B must have received only its two error events and its own message: {b.received()!r}",
    )
    step("nothing crossed between A and B")
    for peer in (a, b, staff):
        peer.close()


def scenario_rest_to_socket(cfg):
    """A message sent over REST arrives as new_message on the sender's socket and the other side."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user", user["token"]).connect()
    a = Peer(cfg, "admin", admin["token"]).connect()
    join(u, conversation)
    join(a, conversation)

    for sender, token, role, identifier in [
        ("user", user["token"], "user", user["identifier"]),
        ("admin", admin["token"], "admin", admin["identifier"]),
    ]:
        cm = unique("rest")
        sent = rest.send(token, conversation, f"Over REST from the {sender} {cm}", cm)
        check_message(sent, "REST send", sender_role=role, sender_identifier=identifier,
                      client_msg_id=cm, conversation_id=conversation)
        for peer in (u, a):
            got = peer.expect("new_message", f"REST message from the {sender} on {peer.name}")
            check_message(got, f"new_message on {peer.name}")
            check(got == sent, f"new_message on {peer.name} differs from the REST answer: "
                               f"{got!r} vs {sent!r}")
        for peer in (u, a):
            peer.expect_none("new_message", f"the {sender}'s REST message once")
        step(f"a REST message from the {sender} reached both sockets once")
    u.close()
    a.close()


def scenario_reconnect_since(cfg):
    """After a reconnect, join with `since` returns exactly what was missed, in order."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    first = Peer(cfg, "user (first connection)", user["token"]).connect()
    join(first, conversation)
    before = send(first, conversation, "Before going offline " + unique("c"))
    got = first.expect("new_message", "own message before going offline")
    check(got.get("id") == before["id"], f"expected new_message {before['id']}: {got!r}")
    last = before["id"]
    first.close()
    check(not first.sio.connected, "the first connection did not close")
    step(f"user went offline after message {last}")

    missed = []
    for n in range(20):
        sent = rest.send(admin["token"], conversation, f"Missed {n + 1} of 20 " + unique("c"))
        missed.append(sent)
    missed_ids = [m["id"] for m in missed]
    check(missed_ids == sorted(missed_ids) and missed_ids[0] > last,
          f"message ids must increase: last {last}, then {missed_ids}")
    step(f"the admin sent 20 messages over REST: {missed_ids[0]}..{missed_ids[-1]}")

    again = Peer(cfg, "user (reconnected)", user["token"]).connect()
    joined = join(again, conversation, since=last)
    got_ids = [m["id"] for m in joined["messages"]]
    check(got_ids == missed_ids,
          f"join since {last}: expected exactly {missed_ids}, got {got_ids}")
    for got, sent in zip(joined["messages"], missed):
        check(got["content"] == sent["content"] and got["sender_role"] == "admin",
              f"join since: message {got['id']} differs from what was sent: {got!r} vs {sent!r}")

    # Nothing newer than the last one: an empty list.
    joined = join(again, conversation, since=missed_ids[-1])
    check(joined["messages"] == [], f"join since the newest: expected [], got {joined['messages']!r}")
    step("join with since returned exactly the 20 missed messages, in order")
    again.close()

    # An app that joins the moment it is connected is answered every time.
    for n in range(40):
        quick = RawSocket(cfg, f"user (quick join {n + 1})", user["token"])
        quick.send_text("420" + json.dumps(
            ["join_conversation", {"conversation_id": conversation, "since": missed_ids[-1]}]))
        try:
            ack = quick.next_text()
        except socket.timeout:
            raise Failure(f"quick join {n + 1}: no ack within {TIMEOUT} s") from None
        check(ack.startswith("430["), f"quick join {n + 1}: expected an ack, got {shorten(ack)}")
        success_data(json.loads(ack[3:])[0], f"quick join {n + 1}")
        quick.close()
    step("40 joins sent the moment the connection opened were all answered")


def scenario_slow_reader(cfg):
    """A client that stops reading fills its bounded buffer and is disconnected, not fed without
    end; when it reads again it sees the disconnect, and a reconnect with `since` gets exactly the
    messages it missed."""
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    frozen = RawSocket(cfg, "user (frozen app)", user["token"])
    frozen.send_text("420" + json.dumps(["join_conversation", {"conversation_id": conversation}]))
    ack = frozen.next_text()
    check(ack.startswith("430["), f"frozen join: expected an ack, got {shorten(ack)}")
    joined = success_data(json.loads(ack[3:])[0], "frozen join")
    last_seen = max([m["id"] for m in joined["messages"]], default=0)
    step(f"the frozen app joined {conversation}; from now on it reads nothing")

    def overflows():
        text = requests.get(cfg["url"] + "/metrics", timeout=10).text
        found = re.search(r"^chatd_socket_overflows_total (\d+)", text, re.M)
        return int(found.group(1)) if found else 0

    # The kernel's socket buffers take some megabytes before the server's own buffer fills, so
    # the admin sends until the server reports the overflow, then a few more.
    before = overflows()
    staff = Peer(cfg, "admin", admin["token"]).connect()
    body = "x" * 4000
    sent = []
    after_overflow = None
    while len(sent) < cfg["flood"] and (after_overflow is None or after_overflow < 10):
        n = len(sent)
        sent.append(send(staff, conversation, f"{n:04} {body}", what=f"admin message {n}")["id"])
        if after_overflow is not None:
            after_overflow += 1
        elif n % 20 == 19 and overflows() > before:
            after_overflow = 0
            step(f"the server reported the overflow after {len(sent)} messages")
    check(after_overflow is not None,
          f"{len(sent)} messages of 4,000 characters never overflowed the frozen app's buffer")
    step(f"the admin sent {len(sent)} messages of 4,000 characters: {sent[0]}..{sent[-1]}")

    # Reading again: whatever was buffered arrives, then the disconnect, well before the flood
    # is through.
    delivered = []
    disconnected = False
    try:
        while True:
            text = frozen.next_text()
            if text.startswith("41"):
                disconnected = True
                break
            if text.startswith('42["new_message",'):
                delivered.append(json.loads(text[2:])[1]["id"])
    except EOFError:
        disconnected = True
    except socket.timeout:
        pass
    frozen.close()
    check(disconnected, f"the frozen app was not disconnected; it received {len(delivered)} "
          f"of {len(sent)} messages and the connection stayed open")
    check(len(delivered) < len(sent),
          f"the frozen app received all {len(sent)} messages: its buffer never overflowed")
    check(delivered == sent[: len(delivered)],
          f"what the frozen app received before the disconnect is not a prefix of what was "
          f"sent: {delivered[:5]}... vs {sent[:5]}...")
    step(f"the frozen app got {len(delivered)} of {len(sent)} messages, then was disconnected")
    if delivered:
        last_seen = delivered[-1]

    again = Peer(cfg, "user (reconnected)", user["token"]).connect()
    caught_up = join(again, conversation, since=last_seen)
    got = [m["id"] for m in caught_up["messages"]]
    check(got == [i for i in sent if i > last_seen],
          f"join since {last_seen}: expected the {len([i for i in sent if i > last_seen])} "
          f"missed messages in order, got {len(got)}: {got[:5]}...")
    step(f"the reconnected app caught up with the {len(got)} messages it missed")


def scenario_bad_input(cfg):
    """Malformed events get error acks with contract codes; the connection stays usable; an
    oversized packet ends only that connection."""
    user = cfg["user"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user", user["token"]).connect()

    def still_usable(after):
        joined = u.ok("join_conversation", {"conversation_id": conversation},
                      f"a valid join after {after}")
        check(joined.get("conversation_id") == conversation,
              f"a valid join after {after}: {joined!r}")

    def message(**fields):
        base = {"conversation_id": conversation, "message_type": "text", "content": "hello",
                "file_id": None, "client_msg_id": unique("cm")}
        base.update(fields)
        return base

    not_found = 9_007_199_254_740_000  # a valid id below 2^53 that names nothing
    cases = [
        ("join_conversation", {"conversation_id": "abc"}, "VALIDATION_ERROR", "a string id"),
        ("join_conversation", {}, "VALIDATION_ERROR", "no conversation_id"),
        ("join_conversation", {"conversation_id": None}, "VALIDATION_ERROR", "a null id"),
        ("join_conversation", {"conversation_id": 1.5}, "VALIDATION_ERROR", "a fractional id"),
        ("join_conversation", {"conversation_id": -1}, "VALIDATION_ERROR", "a negative id"),
        ("join_conversation", {"conversation_id": 10**30}, "VALIDATION_ERROR", "an id over u64"),
        ("join_conversation", {"conversation_id": 2**53 + 1}, "VALIDATION_ERROR", "an id over 2^53"),
        ("join_conversation", {"conversation_id": not_found}, "NOT_FOUND", "an unknown id"),
        ("join_conversation", {"conversation_id": conversation, "since": "x"},
         "VALIDATION_ERROR", "a string since"),
        ("join_conversation", "not an object", "VALIDATION_ERROR", "a string payload"),
        ("join_conversation", None, "VALIDATION_ERROR", "no payload at all"),
        ("leave_conversation", {}, "VALIDATION_ERROR", "leave without an id"),
        ("typing_start", {"conversation_id": "abc"}, "VALIDATION_ERROR", "typing with a string id"),
        ("typing_stop", {}, "VALIDATION_ERROR", "typing_stop without an id"),
        ("typing_start", {"conversation_id": not_found}, "NOT_FOUND", "typing on an unknown id"),
        ("mark_read", {"conversation_id": conversation, "message_ids": "abc"},
         "VALIDATION_ERROR", "message_ids not a list"),
        ("mark_read", {"conversation_id": conversation}, "VALIDATION_ERROR", "no message_ids"),
        ("send_message", message(content="x" * 6000), "VALIDATION_ERROR", "6000-char content"),
        ("send_message", message(content="   \n\t "), "EMPTY_MESSAGE", "blank content"),
        ("send_message", message(content=""), "EMPTY_MESSAGE", "empty content"),
        ("send_message", message(content=123), "VALIDATION_ERROR", "numeric content"),
        ("send_message", message(message_type="video"), "VALIDATION_ERROR", "an unknown type"),
        ("send_message", message(client_msg_id="c" * 65), "VALIDATION_ERROR",
         "a 65-char client_msg_id"),
        ("send_message", message(conversation_id="abc"), "VALIDATION_ERROR", "a string id"),
        ("send_message", message(conversation_id=not_found), "NOT_FOUND", "an unknown id"),
        ("no_such_event", {"conversation_id": conversation}, ("VALIDATION_ERROR", "NOT_FOUND"),
         "an unknown event name"),
    ]
    for event, data, codes, label in cases:
        what = f"{event} with {label} ({shorten(data, 80)})"
        check_error(u.call(event, data, what), codes, what)
        still_usable(what)
        step(f"{what}: error ack {codes}")
    u.expect_none("new_message", "no rejected send may broadcast", within=0.2)

    # A valid message still goes through on the same connection.
    m = send(u, conversation, "Still fine " + unique("c"))
    got = u.expect("new_message", "a valid message after the bad ones")
    check(got.get("id") == m["id"], f"expected new_message {m['id']}: {got!r}")

    # An oversized packet ends that connection, and only that one.
    bystander = Peer(cfg, "bystander", user["token"]).connect()
    join(bystander, conversation)
    big = Peer(cfg, "oversized", user["token"]).connect()
    big.emit("send_message", message(content="x" * (2 * 1024 * 1024)))
    # Sending 2 MB from Python takes a while on a busy machine; the close follows the first frame.
    check(big.disconnected.wait(4 * TIMEOUT),
          "a 2 MB packet must make the server close that connection")
    step("the 2 MB packet closed its connection")
    u.expect_none("new_message", "the oversized message must not be stored", within=0.2)
    fresh = Peer(cfg, "after the oversized packet", user["token"]).connect()
    join(fresh, conversation)
    m = send(fresh, conversation, "Server still up " + unique("c"))
    for peer in (fresh, bystander, u):
        got = peer.expect("new_message", f"new_message on {peer.name} after the oversized packet")
        check(got.get("id") == m["id"], f"{peer.name}: expected new_message {m['id']}: {got!r}")
    check(u.sio.connected and bystander.sio.connected, "other connections must survive")
    step("a new connection works and the others survived")
    for peer in (u, bystander, fresh):
        peer.close()


def scenario_auditor_read_only(cfg):
    """An auditor's socket may join and read, but send_message, mark_read and typing are
    refused with FORBIDDEN and nothing reaches the room."""
    user = cfg["user"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user", user["token"]).connect()
    join(u, conversation)
    a = Peer(cfg, "auditor", cfg["auditor"]["token"]).connect()
    joined = join(a, conversation)
    check(len(joined["messages"]) >= 1, f"the auditor reads the history: {joined!r}")
    cases = [
        ("send_message", {"conversation_id": conversation, "message_type": "text",
                          "content": "an auditor speaks", "file_id": None,
                          "client_msg_id": unique("cm")}),
        ("mark_read", {"conversation_id": conversation, "message_ids": [user["message_id"]]}),
        ("typing_start", {"conversation_id": conversation}),
        ("typing_stop", {"conversation_id": conversation}),
    ]
    for event, data in cases:
        what = f"auditor {event}"
        check_error(a.call(event, data, what), "FORBIDDEN", what)
        step(f"{what}: FORBIDDEN")
    u.expect_none("new_message", "an auditor's refused send must not broadcast", within=0.3)
    u.expect_none("typing_indicator", "an auditor's refused typing must not broadcast", within=0.1)
    u.expect_none("message_read", "an auditor's refused receipt must not broadcast", within=0.1)
    for peer in (u, a):
        peer.close()


def scenario_polling(cfg):
    """The same flow over HTTP long-polling only."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user (polling)", user["token"], ["polling"]).connect()
    a = Peer(cfg, "admin (polling)", admin["token"], ["polling"]).connect()
    join(u, conversation)
    join(a, conversation)

    cm = unique("poll")
    m = send(u, conversation, "Over long-polling " + cm, cm)
    check_message(m, "send_message ack", sender_role="user", client_msg_id=cm,
                  sender_identifier=user["identifier"])
    for peer in (u, a):
        got = peer.expect("new_message", f"new_message on {peer.name}")
        check(got == m, f"new_message on {peer.name} differs from the ack: {got!r} vs {m!r}")
    for peer in (u, a):
        peer.expect_none("new_message", "new_message once")
    step("send_message over polling reached both once")

    reply = rest.send(admin["token"], conversation, "A reply over REST " + unique("c"))
    for peer in (u, a):
        got = peer.expect("new_message", f"REST reply on {peer.name}")
        check(got == reply, f"REST reply on {peer.name}: {got!r} vs {reply!r}")

    u.ok("typing_start", {"conversation_id": conversation})
    got = a.expect("typing_indicator", "typing over polling")
    check(got.get("typing") is True and got.get("conversation_id") == conversation,
          f"typing_indicator over polling: {got!r}")
    read = u.ok("mark_read", {"conversation_id": conversation, "message_ids": [reply["id"]]})
    check(read == {"marked_read": 1}, f"mark_read over polling: {read!r}")
    got = a.expect("message_read", "message_read over polling")
    check(got == {"conversation_id": conversation, "message_ids": [reply["id"]], "read_by": "user"},
          f"message_read over polling: {got!r}")
    step("typing and read receipts over polling")

    # An oversized packet over polling ends that connection only.
    big = Peer(cfg, "oversized (polling)", user["token"], ["polling"]).connect()
    big.emit("send_message", {"conversation_id": conversation, "message_type": "text",
                              "content": "x" * (2 * 1024 * 1024), "file_id": None,
                              "client_msg_id": unique("big")})
    check(big.disconnected.wait(TIMEOUT),
          "a 2 MB packet over polling must make the server close that connection")
    m = send(u, conversation, "Still here " + unique("c"))
    for peer in (u, a):
        got = peer.expect("new_message", f"new_message on {peer.name} after the oversized packet")
        check(got.get("id") == m["id"], f"{peer.name}: expected new_message {m['id']}: {got!r}")
    step("a 2 MB packet over polling closed only its own connection")
    u.close()
    a.close()
    check(not u.sio.connected and not a.sio.connected, "polling clients did not disconnect")


def scenario_two_nodes(cfg):
    """Two chatd processes share MariaDB and Redis: a message accepted on the first reaches a
    socket on the second, and typing crosses both ways."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    second = dict(cfg, url=cfg["second_url"])
    u = Peer(second, "user on node 2", user["token"]).connect()
    a = Peer(cfg, "admin on node 1", admin["token"]).connect()
    join(u, conversation)
    join(a, conversation)

    cm = unique("cross")
    sent = rest.send(admin["token"], conversation, f"Across nodes {cm}", cm)
    got = u.expect("new_message", "the admin's message (sent through node 1) on node 2")
    check(got == sent, f"new_message on node 2 differs from the REST answer: {got!r} vs {sent!r}")
    u.expect_none("new_message", "the message once")
    step("a message accepted on node 1 reached a socket on node 2 once")

    a.ok("typing_start", {"conversation_id": conversation})
    typing = u.expect("typing_indicator", "the admin's typing (node 1) on node 2")
    check(typing.get("typing") is True and typing.get("sender_role") == "admin",
          f"typing_indicator on node 2: {typing!r}")
    u.ok("typing_start", {"conversation_id": conversation})
    typing = a.expect("typing_indicator", "the user's typing (node 2) on node 1")
    check(typing.get("sender_role") == "user", f"typing_indicator on node 1: {typing!r}")
    step("typing crossed both ways")
    u.close()
    a.close()


def scenario_join_while_tables_lag(cfg):
    """While the read tables lag behind the log, a join with `since` is refused with UNAVAILABLE
    (an answer from them would lack the newest message, and the client would never ask for it
    again); once they catch up, the same join returns it."""
    user = cfg["user"]
    conversation = user["conversation_id"]
    data = {"conversation_id": conversation, "since": user["message_id"]}
    u = Peer(cfg, "user", user["token"]).connect()
    check_error(u.call("join_conversation", data), "UNAVAILABLE", "a join while the tables lag")
    step("the join while the read tables lag was refused with UNAVAILABLE")
    deadline = time.monotonic() + 30
    while True:
        ack = u.call("join_conversation", data)
        if isinstance(ack, dict) and ack.get("status") == "success":
            break
        check_error(ack, "UNAVAILABLE", "a join again while the tables lag")
        check(time.monotonic() < deadline, "the join still refused after 30 s")
        time.sleep(0.2)
    ids = [m["id"] for m in ack["data"]["messages"]]
    check(ids == [cfg["lagging_message_id"]],
          f"the join once caught up: expected [{cfg['lagging_message_id']}], got {ids}")
    step("once the tables caught up, the join returned the message")
    u.close()


def scenario_session_ends(cfg):
    """A socket whose session is deleted is disconnected within seconds."""
    u = Peer(cfg, "user", cfg["user"]["token"]).connect()
    step("connected; the test now deletes the session")
    started = time.monotonic()
    check(u.disconnected.wait(15), "the socket is disconnected within 15 s of its session ending")
    step(f"disconnected {time.monotonic() - started:.1f} s after connecting")


def scenario_same_refusals(cfg):
    """Socket events refuse what REST refuses, with the same code and message: one use case
    behind both transports."""
    user = cfg["user"]
    conversation = user["conversation_id"]
    rest = Rest(cfg)
    u = Peer(cfg, "user", user["token"]).connect()
    cases = [
        ([0], "a zero message id"),
        ([user["message_id"], 2**53], "a message id of 2^53"),
    ]
    for message_ids, label in cases:
        what = f"mark_read with {label}"
        status, rest_answer = rest.call(
            "PUT", f"/api/chat/conversations/{conversation}/read", user["token"],
            {"message_ids": message_ids},
        )
        check(status == 400, f"REST {what}: expected 400, got {status} {rest_answer!r}")
        check_error(rest_answer, "VALIDATION_ERROR", f"REST {what}")
        socket_answer = u.call(
            "mark_read", {"conversation_id": conversation, "message_ids": message_ids}, what
        )
        check_error(socket_answer, "VALIDATION_ERROR", f"socket {what}")
        check(
            socket_answer == rest_answer,
            f"{what}: the socket must refuse exactly as REST does: "
            f"socket {socket_answer!r}, REST {rest_answer!r}",
        )
        step(f"{what}: refused alike over REST and Socket.IO")
    u.close()


def scenario_bounded_answers(cfg):
    """What one user can make the server hold stays bounded: a join over a long history of
    large messages answers in pages of at most about 1 MiB that continue to the end, joins and
    typing stops count against their limits, and a socket send naming another user_id is
    refused as over REST."""
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    expected_ids = cfg["message_ids"]
    # Through a proxy the server trusts: the socket's events record the client it names.
    u = Peer(cfg, "user", user["token"]).connect(
        headers={"X-Forwarded-For": cfg["forwarded_for"]})
    a = Peer(cfg, "admin", admin["token"]).connect()
    joins = 0

    since, pages, seen = 0, 0, []
    while True:
        ack = u.call("join_conversation", {"conversation_id": conversation, "since": since},
                     f"join since {since}")
        joins += 1
        size = len(json.dumps(ack, ensure_ascii=False).encode())  # as the wire carries it
        check(size <= cfg["max_answer_bytes"],
              f"join since {since}: an answer of {size} bytes, above {cfg['max_answer_bytes']}")
        data = success_data(ack, f"join since {since}")
        ids = [m["id"] for m in data["messages"]]
        check(ids, f"join since {since}: an empty page before the end: {shorten(data)}")
        seen += ids
        pages += 1
        if not data["has_more"]:
            check(data.get("next_since") is None, f"the last page names no next_since: {shorten(data)}")
            break
        check(data.get("next_since") == ids[-1],
              f"join since {since}: next_since must be the page's last id {ids[-1]}: "
              f"{data.get('next_since')!r}")
        since = data["next_since"]
        check(pages < 100, "a join that never ends")
    check(seen == expected_ids,
          f"the pages must hold every message once, in order: {len(seen)} ids, "
          f"expected {len(expected_ids)}")
    check(pages > 1, f"{len(expected_ids)} large messages must need more than one page")
    step(f"{len(seen)} messages came in {pages} pages, each at most {cfg['max_answer_bytes']} bytes")

    join(a, conversation, since=expected_ids[-1])
    for n in range(cfg["typing_limit"]):
        u.ok("typing_start", {"conversation_id": conversation}, f"typing_start {n + 1}")
        u.ok("typing_stop", {"conversation_id": conversation}, f"typing_stop {n + 1}")
    step(f"{cfg['typing_limit']} starts each followed by a stop: all accepted")
    check_error(u.call("typing_stop", {"conversation_id": conversation}, "a lone typing_stop"),
                "RATE_LIMITED", "a typing_stop without a start once the limit is used")
    check_error(u.call("typing_start", {"conversation_id": conversation}, "one start too many"),
                "RATE_LIMITED", "a typing_start over the limit")
    time.sleep(QUIET)
    indicators = [p for e, p in a.received() if e == "typing_indicator"]
    check(len(indicators) == 2 * cfg["typing_limit"],
          f"the admin must see exactly the accepted indicators: {len(indicators)}")
    step("a lone typing_stop counts against the typing limit")

    while joins < cfg["join_limit"]:
        u.ok("join_conversation", {"conversation_id": conversation,
                                   "since": expected_ids[-1]}, f"join {joins + 1}")
        joins += 1
    check_error(u.call("join_conversation", {"conversation_id": conversation}, "one join too many"),
                "RATE_LIMITED", f"join {joins + 1} of a limit of {cfg['join_limit']}")
    step(f"join {joins + 1} within a minute was refused with RATE_LIMITED")

    what = "send_message naming another user_id"
    ack = u.call("send_message", {"conversation_id": conversation, "content": "not mine",
                                  "user_id": user["id"] + 1}, what)
    check_error(ack, "FORBIDDEN", what)
    status, rest_answer = Rest(cfg).call(
        "POST", "/api/chat/messages", user["token"],
        {"conversation_id": conversation, "content": "not mine", "user_id": user["id"] + 1})
    check(status == 403 and ack == rest_answer,
          f"{what}: the socket must refuse exactly as REST does: socket {ack!r}, REST {status} "
          f"{rest_answer!r}")
    step(f"{what}: refused alike over REST and Socket.IO")
    send(u, conversation, "sent over the socket")
    u.close()
    a.close()


def scenario_attachments(cfg):
    """Image and file messages carry what MessageKit needs to lay them out (pixels, name, size,
    type) in the ack, in new_message, in join catch-up, in REST history and in search; a file's
    link is the same wherever it appears."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    photo, document = cfg["photo"], cfg["document"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user", user["token"]).connect()
    a = Peer(cfg, "admin", admin["token"]).connect()
    join(u, conversation)
    join(a, conversation)
    image_fields = {
        "message_type": "image",
        "file_id": photo["file_id"],
        "file_name": photo["filename"],
        "file_size": photo["file_size"],
        "mime_type": "image/png",
        "width": photo["width"],
        "height": photo["height"],
    }
    file_fields = {
        "message_type": "file",
        "file_id": document["file_id"],
        "file_name": document["filename"],
        "file_size": document["file_size"],
        "mime_type": "application/pdf",
        "width": None,
        "height": None,
    }

    image = u.ok(
        "send_message",
        {"conversation_id": conversation, "message_type": "image", "content": "",
         "file_id": photo["file_id"], "client_msg_id": unique("img")},
        "user sends an image",
    )
    check_message(image, "the image's ack", **image_fields)
    check(image["file_url"], f"an image message needs a file_url: {image!r}")
    for peer in (u, a):
        got = peer.expect("new_message", f"the image on {peer.name}")
        check(got == image, f"new_message on {peer.name} differs from the ack: {got!r} vs {image!r}")
    step("the image's ack and new_message carry its pixels, name, size and type")

    caption = "the invoice for march"
    body = {"conversation_id": conversation, "message_type": "file", "content": caption,
            "file_id": document["file_id"]}
    pdf = rest.ok("POST", "/api/chat/messages", user["token"], body, statuses=(201,))
    check_message(pdf, "the file's REST answer", content=caption, **file_fields)
    for peer in (u, a):
        got = peer.expect("new_message", f"the file on {peer.name}")
        check(got == pdf, f"new_message on {peer.name} differs from the answer: {got!r} vs {pdf!r}")
    step("the file's answer and new_message carry its name, size and type, and no pixels")

    text = u.ok(
        "send_message",
        {"conversation_id": conversation, "message_type": "text", "content": "and a word",
         "client_msg_id": unique("txt")},
        "user sends text",
    )
    check_message(text, "a text message", file_id=None, file_url=None, file_name=None,
                  file_size=None, mime_type=None, width=None, height=None)

    caught_up = join(a, conversation, since=user["message_id"])["messages"]
    check([m["id"] for m in caught_up] == [image["id"], pdf["id"], text["id"]],
          f"join since the first message must answer the three after it: {caught_up!r}")
    check(caught_up[0] == image and caught_up[1] == pdf,
          f"join catch-up must answer the messages as sent: {caught_up!r}")
    history = rest.ok("GET", f"/api/chat/messages?conversation_id={conversation}", admin["token"])
    by_id = {m["id"]: m for m in history["messages"]}
    check(by_id.get(image["id"]) == image and by_id.get(pdf["id"]) == pdf,
          f"REST history must answer the messages as sent: {history!r}")
    step("join catch-up and REST history answer the same fields and the same links")

    found = rest.ok("GET", "/api/chat/search?q=invoice", admin["token"])
    hits = [r for r in found["results"] if r["message_id"] == pdf["id"]]
    check(len(hits) == 1, f"search must find the file's caption: {found!r}")
    hit = hits[0]
    for key in ("message_type", "file_id", "file_url", "file_name", "file_size", "mime_type",
                "width", "height"):
        check(hit.get(key) == pdf[key], f"search result {key}: {hit.get(key)!r} != {pdf[key]!r}")
    step("a search hit on a caption carries its file's fields and link")
    u.close()
    a.close()


# ---------------------------------------------------------------------------------------------
# The iOS guide (docs/ios.md): its worked signatures and its JSON examples against the server

GUIDE_BLOCK = re.compile(r"<!-- checked: ([a-z-]+) -->\s*```(\w+)\n(.*?)```", re.S)
# Checked elsewhere: the push payload needs a push provider (tests/api/push.rs).
GUIDE_KINDS_HERE = {"signature", "message-text", "message-image", "join-ack", "error"}
GUIDE_KINDS_ELSEWHERE = {"push-apns"}


def guide_blocks(path):
    with open(path, encoding="utf-8") as guide:
        text = guide.read()
    blocks = {}
    for kind, _, body in GUIDE_BLOCK.findall(text):
        blocks.setdefault(kind, []).append(body)
    return blocks


def json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def same_shape(example, real, where):
    """`real` has the example's keys, no others, and the same JSON type at every one (a null
    stands for any scalar: optional fields are null in some answers); every item of a real array
    has the shape of the example's first item."""
    scalars = {"string", "integer", "number", "boolean"}
    kinds = {json_type(example), json_type(real)}
    if "null" in kinds and kinds - {"null"} <= scalars:
        return
    check(json_type(example) == json_type(real),
          f"{where}: the guide shows {json_type(example)} {example!r}, the server answers "
          f"{json_type(real)} {real!r}")
    if isinstance(example, dict):
        check(set(example) == set(real),
              f"{where}: the guide's keys {sorted(example)} differ from the server's "
              f"{sorted(real)}: missing {sorted(set(real) - set(example))}, "
              f"extra {sorted(set(example) - set(real))}")
        for key in example:
            same_shape(example[key], real[key], f"{where}.{key}")
        if "status" in example:
            check(example["status"] == real["status"], f"{where}.status: {real['status']!r}")
        if "timestamp" in example:
            check(TIMESTAMP.match(example["timestamp"]), f"{where}.timestamp: {example!r}")
    elif isinstance(example, list) and example:
        check(real, f"{where}: the server answered an empty list")
        for i, item in enumerate(real):
            same_shape(example[0], item, f"{where}[{i}]")


def scenario_ios_guide(cfg):
    """Every value docs/ios.md shows is what the server does: its worked signatures recompute,
    requests signed that way are accepted, and its JSON examples have the shape of real answers."""
    blocks = guide_blocks(cfg["guide"])
    check(set(blocks) == GUIDE_KINDS_HERE | GUIDE_KINDS_ELSEWHERE,
          f"every checked block of the guide needs a check here: {sorted(blocks)}")
    rest = Rest(cfg)
    user, admin, photo = cfg["user"], cfg["admin"], cfg["photo"]
    conversation = user["conversation_id"]

    for example in blocks["signature"]:
        fields = {}
        for line in example.splitlines():
            match = re.match(r"^([A-Za-z][A-Za-z0-9 -]*?)\s+:\s?(.*)$", line)
            check(match, f"a signature example line reads `name : value`: {line!r}")
            fields[match.group(1)] = match.group(2)
        body = fields["body"].encode()
        check(hashlib.sha256(body).hexdigest() == fields["body SHA-256"],
              f"the guide's body hash of {fields['body']!r} is wrong")
        expected = signature(fields["app secret"].encode(), fields["X-Timestamp"],
                             fields["method"], fields["path and query"], body)
        check(expected == fields["X-Signature"],
              f"the guide's signature for {fields['method']} {fields['path and query']} is "
              f"{fields['X-Signature']}, the recipe gives {expected}")
        # The same request, for this test's conversation, signed now by the same recipe.
        path = fields["path and query"].replace("conversation_id=7", f"conversation_id={conversation}")
        sent = json.loads(fields["body"]) if fields["body"] else None
        if sent is not None:
            sent["conversation_id"] = conversation
            sent["client_msg_id"] = unique("guide")
        rest.ok(fields["method"], path, user["token"], sent)
        step(f"the guide's {fields['method']} signature recomputes and its recipe is accepted")

    text = rest.send(admin["token"], conversation, "Hello! How can I help?")
    same_shape(json.loads(blocks["message-text"][0]), text, "message-text")
    image = rest.ok("POST", "/api/chat/messages", user["token"],
                    {"conversation_id": conversation, "message_type": "image", "content": "",
                     "file_id": photo["file_id"], "client_msg_id": unique("guide")},
                    statuses=(201,))
    same_shape(json.loads(blocks["message-image"][0]), image, "message-image")
    step("the guide's text and image messages have the server's shape")

    peer = Peer(cfg, "user", user["token"]).connect()
    joined = peer.call("join_conversation", {"conversation_id": conversation,
                                             "since": user["message_id"]})
    same_shape(json.loads(blocks["join-ack"][0]), joined, "join-ack")
    shown = json.loads(blocks["join-ack"][0])["data"]
    check(shown["has_more"] is False and shown["next_since"] is None,
          "join-ack: the guide's example is a last page, as the server answers this one")
    refused = peer.call("join_conversation", {"conversation_id": 0})
    same_shape(json.loads(blocks["error"][0]), refused, "error")
    check(refused["error_code"] in ERROR_CODES, f"an error code of the contract: {refused!r}")
    step("the guide's join answer and error envelope have the server's shape")
    peer.close()


def scenario_join_answer_first(cfg):
    """While messages keep arriving, a join's answer reaches the socket before any newer
    broadcast: the messages a client sees, answers and broadcasts in the order they arrive, only
    ever go forward (a repeat of one already seen aside)."""
    rest = Rest(cfg)
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    stop = threading.Event()
    sent = []

    def keep_sending():
        while not stop.is_set():
            sent.append(rest.send(admin["token"], conversation, "busy " + unique("c"))["id"])

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    raw = RawSocket(cfg, "user (raw)", user["token"])
    seen, last, backwards, overtaken = set(), user["message_id"], [], 0

    def arrived(message_id, how):
        nonlocal last
        if message_id in seen:
            return
        if message_id < last:
            backwards.append(f"{message_id} ({how}) after {last}")
        seen.add(message_id)
        last = max(last, message_id)

    try:
        for n in range(40):
            ack_id = 100 + n
            raw.send_text(f"42{ack_id}" + json.dumps(
                ["join_conversation", {"conversation_id": conversation, "since": last}]))
            while True:
                packet = raw.next_text()
                if packet.startswith(f"43{ack_id}["):
                    joined = success_data(json.loads(packet[len(f"43{ack_id}"):])[0],
                                          f"join {n + 1}")
                    for message in joined["messages"]:
                        arrived(message["id"], f"answer of join {n + 1}")
                    break
                if packet.startswith("42["):
                    name, data = json.loads(packet[2:])[:2]
                    if name == "new_message" and data.get("conversation_id") == conversation:
                        if data["id"] > last:
                            overtaken += 1
                        arrived(data["id"], f"broadcast during join {n + 1}")
            raw.send_text("42" + json.dumps(
                ["leave_conversation", {"conversation_id": conversation}]))
            time.sleep(0.01)
    finally:
        stop.set()
        sender.join(timeout=TIMEOUT)
        raw.close()
    check(len(sent) > 40, f"messages kept arriving during the joins: {len(sent)} sent")
    check(not backwards, f"a join's answer came after newer broadcasts: {backwards[:5]}")
    step(f"40 joins while {len(sent)} messages arrived: every answer came before newer "
         f"broadcasts ({overtaken} broadcasts newer than the last seen arrived during joins, "
         f"all after what the answers held)")


def scenario_message_changes(cfg):
    """edit_message and delete_message: the sender edits their text, an admin removes a message
    with a reason; every socket in the room hears message_updated and message_deleted once, in
    the contract's shapes; refusals come back as error acks and change nothing."""
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    u = Peer(cfg, "user", user["token"]).connect()
    a = Peer(cfg, "admin", admin["token"]).connect()
    join(u, conversation)
    join(a, conversation)
    sent = send(u, conversation, "helo wrold")
    for peer in (u, a):
        peer.expect("new_message", f"the message on {peer.name}")

    edited = u.ok("edit_message", {"id": sent["id"], "message": "hello world"})
    check_message(edited, "edit_message ack", id=sent["id"], content="hello world",
                  timestamp=sent["timestamp"])
    check(TIMESTAMP.match(edited.get("edited_at") or ""), f"edit ack has edited_at: {edited!r}")
    for peer in (u, a):
        update = peer.expect("message_updated", f"the edit on {peer.name}")
        expected = {"conversation_id": conversation, "id": sent["id"], "message": "hello world",
                    "content": "hello world", "edited_at": edited["edited_at"]}
        check(update == expected, f"message_updated on {peer.name}: {update!r} != {expected!r}")
        peer.expect_none("message_updated", f"the edit once on {peer.name}")
    step("an edit reached both sockets once")

    check_error(a.call("edit_message", {"id": sent["id"], "message": "not mine"}), "FORBIDDEN",
                "an admin editing the user's message")
    check_error(a.call("delete_message", {"id": sent["id"]}), "VALIDATION_ERROR",
                "an admin removing without a reason")
    check_error(u.call("edit_message", {"id": "x", "message": "?"}), "VALIDATION_ERROR",
                "a malformed id")
    check_error(u.call("edit_message", {"id": sent["id"], "message": "   "}), "EMPTY_MESSAGE",
                "an empty edit")
    check_error(u.call("delete_message", {"id": MAX_ID + 1}), "VALIDATION_ERROR",
                "an id beyond 2^53")
    for peer in (u, a):
        peer.expect_none("message_updated", f"no change after refusals on {peer.name}")
        peer.expect_none("message_deleted", f"no deletion after refusals on {peer.name}")

    removed = a.ok("delete_message", {"id": sent["id"], "reason": "rude"})
    check(removed.get("deleted") is True and removed.get("content") == ""
          and removed.get("deleted_by") == "admin", f"delete_message ack: {removed!r}")
    for peer in (u, a):
        deletion = peer.expect("message_deleted", f"the deletion on {peer.name}")
        expected = {"conversation_id": conversation, "id": sent["id"], "deleted_by": "admin"}
        check(deletion == expected, f"message_deleted on {peer.name}: {deletion!r}")
    check_error(u.call("edit_message", {"id": sent["id"], "message": "undo"}), "CONFLICT",
                "editing a deleted message")

    # A client that joins later reads the tombstone.
    late = Peer(cfg, "late", user["token"]).connect()
    joined = join(late, conversation)
    tombstone = [m for m in joined["messages"] if m["id"] == sent["id"]]
    check(len(tombstone) == 1 and tombstone[0].get("deleted") is True
          and tombstone[0]["content"] == "", f"the join shows a tombstone: {tombstone!r}")
    for peer in (u, a, late):
        peer.close()


SCENARIOS = {
    "message_changes": scenario_message_changes,
    "ios_guide": scenario_ios_guide,
    "attachments": scenario_attachments,
    "connect_styles": scenario_connect_styles,
    "bounded_answers": scenario_bounded_answers,
    "same_refusals": scenario_same_refusals,
    "session_ends": scenario_session_ends,
    "two_nodes": scenario_two_nodes,
    "bad_token": scenario_bad_token,
    "contract_events": scenario_contract_events,
    "isolation": scenario_isolation,
    "rest_to_socket": scenario_rest_to_socket,
    "reconnect_since": scenario_reconnect_since,
    "bad_input": scenario_bad_input,
    "slow_reader": scenario_slow_reader,
    "polling": scenario_polling,
    "auditor_read_only": scenario_auditor_read_only,
    "join_while_tables_lag": scenario_join_while_tables_lag,
    "join_answer_first": scenario_join_answer_first,
}


def report(error):
    out = sys.stderr
    print(f"\nFAILED: {error}", file=out)
    if not isinstance(error, Failure):
        traceback.print_exc(file=out)
    print("\nsteps:", file=out)
    for line in STEPS:
        print("  " + line, file=out)
    for peer in PEERS:
        print(f"\nreceived by {peer.name} ({peer.transports}):", file=out)
        for at, event, payload in peer.log:
            print(f"  [{at:7.3f}] {event} {shorten(payload, 400)}", file=out)


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: scenarios.py <{'|'.join(SCENARIOS)}>  (JSON config on stdin)",
              file=sys.stderr)
        return 2
    cfg = json.load(sys.stdin)
    step(f"scenario {sys.argv[1]} on {cfg.get('backend', '?')} at {cfg['url']}")
    try:
        SCENARIOS[sys.argv[1]](cfg)
    except Exception as error:  # noqa: BLE001 - every failure is reported the same way
        report(error)
        return 1
    finally:
        for peer in PEERS:
            try:
                peer.close()
            except Exception:  # noqa: BLE001
                pass
    step("passed")
    return 0


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
