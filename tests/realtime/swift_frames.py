#!/usr/bin/env python3
"""The frames Socket.IO-Client-Swift 16 puts on the wire, sent as it sends them, and chatd's
answers checked byte for byte as that client parses them.

Run by tests/api/realtime.rs as `python3 tests/realtime/swift_frames.py` with the configuration of
scenarios.py on stdin (`url`, `secret`, `backend`, `user`, `admin`) and:

    {"ping_interval_ms": 500, "ping_timeout_ms": 2000, "max_payload": 65536,
     "base64_token": "<another session token of the user, with + / = in it>"}

(`base64_token` only where sessions live in Redis, where a login system may write such tokens.)
Exit status 0 when every check holds; otherwise the failed check, the steps and every frame of
every connection (tokens masked) go to stderr and the exit status is 1.

What the client sends, from socketio/socket.io-client-swift at v16.1.1 (the wire code is the same
since v16.0.0) and Starscream 4.0.8, the WebSocket library it pins (Package.swift):

- Path `/socket.io/`: `SocketManager.setConfigs` inserts `.path("/socket.io/")`
  (Source/SocketIO/Manager/SocketManager.swift:572).
- Query (`SocketEngine.createURLs`, Source/SocketIO/Engine/SocketEngine.swift:264-305):
  `transport=websocket`, or `transport=polling&b64=1`, then each `.connectParams` entry as
  `&key=value`, both sides through `String.urlEncode()`, then `&EIO=4` (`engineIOParam` for the
  default `.version(.three)`, Source/SocketIO/Engine/SocketEngineSpec.swift:148-155,
  SocketManager.swift:122) unless the query already contains the text "EIO". Polling requests
  after the handshake append `&sid=<sid, urlEncoded>` (SocketEngineSpec.swift:157-166); with
  `.forceWebsockets(true)` the websocket is opened at once with an empty sid, so its URL has no
  `sid` (SocketEngine.swift:252-255, SocketEngineSpec.swift:168-178). No `t=` cache buster.
- `urlEncode()` percent-encodes ``!*'();:@&=+$,/?%#[]" {}^|`` (and, being Foundation's
  `addingPercentEncoding`, everything outside ASCII) and leaves the rest
  (Source/SocketIO/Util/SocketExtensions.swift:39-43, 129-131): a token's `+`, `/`, `=` become
  `%2B`, `%2F`, `%3D`.
- Headers: `.extraHeaders` (and cookies) on every polling request and on the websocket upgrade
  (`addHeaders`, SocketEngineSpec.swift:180-193; SocketEngine.swift:307-320); a POST adds
  `Content-Type: text/plain; charset=UTF-8` (Source/SocketIO/Engine/SocketEnginePollable.swift:
  94-102). The upgrade is Starscream's (`HTTPWSHeader.createUpgrade`,
  Sources/Framer/HTTPHandler.swift:51-91 of daltoniam/Starscream): `Origin` is the websocket
  URL's `ws://host:port`, `Host` is `host:port` (port always written), `Upgrade: websocket`,
  `Connection: Upgrade`, `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key` that is the base64 of
  16 random letters a-z, and, with `.compress` (docs/ios.md's configuration),
  `Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits;
  server_max_window_bits=15`. Polling requests carry URLSession's own headers besides.
- Connect (`SocketManager.connectSocket`, SocketManager.swift:207-225): the engine message
  `0/,` plus the payload of `connect(withPayload:)` as `JSONSerialization` writes it
  (`.fragmentsAllowed` only), so `40/,{"token":"..."}` on the wire; the default namespace is
  spelled `/,`, unlike the JS client's `40{...}`. Without a payload: `40/,`. JSONSerialization
  writes no spaces, escapes `/` as `\\/`, keeps non-ASCII as UTF-8 and orders a dictionary's keys
  as it pleases (so the server may rely on no order).
- Events (`SocketPacket.createPacketString`, Source/SocketIO/Parse/SocketPacket.swift:116-126):
  type, for binary `<attachments>-`, the namespace only when it is not `/`, the ack id, then the
  JSON array `[event, items...]` (`Array.toJSON`, no options, SocketExtensions.swift:33-37).
- Ack ids: `currentAck` starts at -1 and `createOnAck` increments it before use, so the first
  `emitWithAck` of a socket is ack id 0, then 1, 2, ... (Source/SocketIO/Client/
  SocketIOClient.swift:84, 162-166); the packet leaves only at `timingOut(after:)`
  (Source/SocketIO/Ack/SocketAckEmitter.swift:131-144). So `420["join_conversation",{...}]`.
- Binary: every `Data` in the items becomes `{"_placeholder":true,"num":n}` and the packet a
  binary event, `451-<ack>[...]` (SocketPacket.swift:195-249). The placeholder is a Swift
  dictionary: its keys come in the order of the process's random hash seed, `num` first on some
  launches of the app. Over a websocket the text frame is followed by one binary frame per
  attachment, the raw bytes (Engine.IO 4: no 0x04 prefix; Source/SocketIO/Engine/
  SocketEngineWebsocket.swift:68-86, SocketEngineSpec.swift:195-203). Over polling the
  attachment is `b<base64>`, its own packet in the same POST, packets joined by 0x1e
  (SocketEnginePollable.swift:76-105, 240-254).
- Pings: the server's `2` is answered `3` (`handlePing`, SocketEngine.swift:483-489); without any
  frame for pingInterval + pingTimeout the client gives up (SocketEngine.swift:491-506).
- What it parses (Source/SocketIO/Parse/SocketParsable.swift:77-128, SocketIOClient.swift:
  375-390): `40{"sid":...}` connects, `44{...}` is the `error` client event with that object,
  `43<id>[...]` calls the ack callback with the array (the app reads its first item), `42[...]`
  is an event.
- Leaving: `41/,` (`disconnectSocket`, SocketManager.swift:251-255), then the engine's close
  `1` (SocketEngine.swift:338-357).
"""

import base64
import json
import os
import queue
import random
import re
import sys
import threading
import time
import traceback

import requests
import websocket

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenarios import (  # noqa: E402 - the shape checks and step log of the other Socket.IO tests
    QUIET,
    STEPS,
    TIMEOUT,
    Failure,
    Rest,
    check,
    check_error,
    check_message,
    shorten,
    step,
    success_data,
    unique,
)

# The frames chatd answers with, exactly.
OPEN = re.compile(
    r'0\{"sid":"([A-Za-z0-9_-]+)","upgrades":\[((?:"websocket")?)\],'
    r'"pingInterval":(\d+),"pingTimeout":(\d+),"maxPayload":(\d+)\}'
)
CONNECTED = re.compile(r'40\{"sid":"([A-Za-z0-9_-]+)"\}')
REFUSED = re.compile(r'44\{"code":"UNAUTHORIZED","message":"([^"\\]+)"\}')
ACK = re.compile(r"43(0|[1-9][0-9]*)(\[.*\])", re.DOTALL)
EVENT = re.compile(r"42(\[.*\])", re.DOTALL)

# What `.compress` makes Starscream offer.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits; server_max_window_bits=15"
# URLSession's own headers on the polling requests (an iPhone's, as a server sees them).
URLSESSION_HEADERS = {
    "User-Agent": "Chat/1 CFNetwork/1494.0.7 Darwin/23.4.0",
    "Accept": "*/*",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
    "Connection": "keep-alive",
}
URL_RESERVED = set("!*'();:@&=+$,/?%#[]\" {}^|")
# Content with what JSONSerialization writes differently from other encoders: `\/`, and UTF-8.
CONTENT = "Swift 16 says hi: café ☕ a/b"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SECRETS = []  # every token this run uses, masked in everything it prints
CONNECTIONS = []


class Silence(Failure):
    """Nothing arrived in time."""


def masked(text):
    for secret in SECRETS:
        for form in (secret, swift_url_encode(secret), secret.replace("/", "\\/")):
            text = text.replace(form, "<token>")
    return text


def say(text):
    step(masked(text))


# ---------------------------------------------------------------------------------------------
# The client's encodings


def swift_url_encode(text):
    """`String.urlEncode()`: everything but URL_RESERVED stays; non-ASCII is always encoded."""
    return "".join(
        char if char.isascii() and char not in URL_RESERVED
        else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in text
    )


def swift_json(value):
    """`JSONSerialization.data(withJSONObject:)` without options that change the text."""
    # A `/` only ever occurs inside JSON strings.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def swift_query(transport, connect_params, sid=None):
    query = "transport=websocket" if transport == "websocket" else "transport=polling&b64=1"
    for key, value in connect_params.items():
        query += f"&{swift_url_encode(key)}={swift_url_encode(str(value))}"
    # Swift's own test: a parameter that happens to contain "EIO" leaves the version out.
    if "EIO" not in query:
        query += "&EIO=4"
    if sid is not None:
        query += f"&sid={swift_url_encode(sid)}"
    return query


def connect_frame(payload):
    return "40/," + ("" if payload is None else swift_json(payload))


def event_frame(ack_id, items, attachments=0):
    kind = f"5{attachments}-" if attachments else "2"
    return f"4{kind}{ack_id}{swift_json(items)}"


def starscream_key():
    return base64.b64encode(bytes(random.randint(97, 122) for _ in range(16))).decode()


# The three places the app may put the token: (connect payload, connectParams, extraHeaders).
def payload_style(token):
    return {"token": token}, {}, {}


def header_style(token):
    return None, {}, {"Authorization": f"Bearer {token}"}


def query_style(token):
    return None, {"token": token}, {}


STYLES = [
    ("connect(withPayload:)", payload_style),
    (".extraHeaders", header_style),
    (".connectParams", query_style),
]


# ---------------------------------------------------------------------------------------------
# Answers


def check_open(text, cfg, upgrades, what):
    match = OPEN.fullmatch(text)
    check(
        match,
        f"{what}: the Engine.IO open packet must read exactly "
        f'0{{"sid":"...","upgrades":[...],"pingInterval":N,"pingTimeout":N,"maxPayload":N}} '
        f"(a sid that urlEncode() leaves as is), got {text!r}",
    )
    opened = json.loads(text[1:])
    check(opened["upgrades"] == upgrades, f"{what}: upgrades must be {upgrades}: {text!r}")
    expected = (cfg["ping_interval_ms"], cfg["ping_timeout_ms"], cfg["max_payload"])
    got = (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"])
    check(got == expected,
          f"{what}: pingInterval, pingTimeout, maxPayload must be {expected}: {text!r}")
    return opened["sid"]


def ack_envelope(text, ack_id, what):
    """The envelope of the ack frame `43<ack_id>[envelope]`: the array Swift hands the ack
    callback holds exactly it."""
    match = ACK.fullmatch(text)
    check(match, f"{what}: expected the ack frame 43{ack_id}[...], got {shorten(text)}")
    check(match.group(1) == str(ack_id), f"{what}: the ack must echo id {ack_id}: {shorten(text)}")
    items = json.loads(match.group(2))
    check(
        isinstance(items, list) and len(items) == 1,
        f"{what}: the ack's array must hold the envelope alone: {shorten(text)}",
    )
    return items[0]


def event_of(text, what):
    match = EVENT.fullmatch(text)
    check(match, f"{what}: expected an event frame 42[...], got {shorten(text)}")
    items = json.loads(match.group(1))
    check(
        isinstance(items, list) and len(items) == 2 and isinstance(items[0], str),
        f"{what}: an event frame must be [name, payload]: {shorten(text)}",
    )
    return items[0], items[1]


def ack_and_new_message(frames, ack_id, what):
    """The ack of a send_message and its new_message, in whichever order they came."""
    acks = [f for f in frames if f.startswith("43")]
    events = [f for f in frames if f.startswith("42")]
    check(
        len(acks) == 1 and len(events) == 1,
        f"{what}: expected one ack and one new_message frame, got {[shorten(f) for f in frames]}",
    )
    name, pushed = event_of(events[0], what)
    check(name == "new_message", f"{what}: expected new_message, got {shorten(events[0])}")
    return success_data(ack_envelope(acks[0], ack_id, what), what), pushed


# ---------------------------------------------------------------------------------------------
# The two transports, frame by frame


class SwiftWebsocket:
    """`.forceWebsockets(true)`: one websocket, opened at once."""

    transport = "websocket"

    def __init__(self, cfg, name, connect_params, extra_headers):
        self.name = name
        self.frames = []  # (seconds, direction, frame) for the report
        self.pings = 0
        self.acks = 0
        host = cfg["url"].removeprefix("http://")
        url = f"ws://{host}/socket.io/?{swift_query('websocket', connect_params)}"
        header = {"Sec-WebSocket-Key": starscream_key(), "Sec-WebSocket-Extensions": DEFLATE_OFFER}
        header.update(extra_headers)
        self.ws = None
        CONNECTIONS.append(self)
        self._log("->", f"GET {url} {sorted(header)}")
        try:
            self.ws = websocket.create_connection(
                url, header=header, host=host, origin=f"ws://{host}", timeout=TIMEOUT
            )
        except websocket.WebSocketBadStatusException as error:
            raise Failure(masked(f"{name}: the websocket upgrade was refused: {error}")) from None
        check(self.ws.getstatus() == 101, f"{name}: upgrade answered {self.ws.getstatus()}")
        extensions = self.ws.getheaders().get("sec-websocket-extensions")
        # Accepting the offer would make Starscream compress every frame it sends.
        check(extensions is None, f"{name}: the server accepted {extensions!r}; frames differ")
        self.open = self.next_packet("the open packet")

    def _log(self, direction, frame):
        self.frames.append((time.monotonic() - START, direction, frame))

    def send(self, *packets):
        """Packets as the engine writes them: text frames, a `bytes` as a binary frame."""
        for packet in packets:
            self._log("->", packet)
            if isinstance(packet, bytes):
                self.ws.send_binary(packet)
            else:
                self.ws.send(packet)

    def next_packet(self, what, timeout=TIMEOUT):
        """The next Engine.IO packet but pings, which are answered `3` on the way."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Silence(f"{self.name}: {what}: nothing arrived within {timeout} s")
            self.ws.settimeout(left)
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, OSError) as error:
                raise Failure(f"{self.name}: {what}: the connection ended: {error!r}") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._log("<-", f"close frame {data!r}")
                raise Failure(f"{self.name}: {what}: the server closed the websocket")
            check(
                opcode == websocket.ABNF.OPCODE_TEXT,
                f"{self.name}: {what}: expected a text frame, got opcode {opcode}: {data!r}",
            )
            text = data.decode("utf-8")
            self._log("<-", text)
            if text == "2":
                self.pings += 1
                self.send("3")
                continue
            return text

    def close(self):
        if self.ws is None or not self.ws.connected:
            return
        try:
            self.send("41/,", "1")
            self.ws.close()
        except (websocket.WebSocketException, OSError):
            pass


class SwiftPolling:
    """`.forcePolling(true)`: a long-poll GET always outstanding, POSTs one at a time."""

    transport = "polling"

    def __init__(self, cfg, name, connect_params, extra_headers):
        self.name = name
        self.frames = []
        self.pings = 0
        self.acks = 0
        self.received = queue.Queue()
        self.ended = threading.Event()
        self.post_turn = threading.Lock()
        self.headers = dict(URLSESSION_HEADERS, **extra_headers)
        self.polls = requests.Session()
        self.posts = requests.Session()
        self.poller = None
        CONNECTIONS.append(self)
        # Long enough for the server's ping to end every poll.
        self.poll_timeout = (cfg["ping_interval_ms"] + cfg["ping_timeout_ms"]) / 1000 + TIMEOUT
        handshake = f"{cfg['url']}/socket.io/?{swift_query('polling', connect_params)}"
        self._log("->", f"GET {handshake}")
        response = self.polls.get(handshake, headers=self.headers, timeout=TIMEOUT)
        self._check_answer(response, "the handshake")
        check("\x1e" not in response.text,
              f"{name}: the handshake holds one packet: {response.text!r}")
        self._log("<-", response.text)
        self.open = response.text
        sid = json.loads(response.text[1:])["sid"] if OPEN.fullmatch(response.text) else ""
        self.url = f"{cfg['url']}/socket.io/?{swift_query('polling', connect_params, sid)}"
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _log(self, direction, frame):
        self.frames.append((time.monotonic() - START, direction, frame))

    def _check_answer(self, response, what):
        check(
            response.status_code == 200,
            f"{self.name}: {what}: HTTP {response.status_code} {shorten(response.text)}",
        )
        check(
            response.headers.get("Content-Type") == "text/plain; charset=UTF-8",
            f"{self.name}: {what}: Content-Type {response.headers.get('Content-Type')!r}",
        )

    def _poll(self):
        try:
            while not self.ended.is_set():
                response = self.polls.get(self.url, headers=self.headers, timeout=self.poll_timeout)
                self._check_answer(response, "a long-poll GET")
                for packet in response.content.decode("utf-8").split("\x1e"):
                    self._log("<-", packet)
                    if packet == "2":
                        self.pings += 1
                        self.send("3")
                    elif packet == "1":
                        raise Failure(f"{self.name}: the server closed the session")
                    elif packet != "6":
                        self.received.put(packet)
        except (requests.RequestException, Failure) as error:
            if not self.ended.is_set():
                self.received.put(Failure(masked(f"{self.name}: {error}")))

    def send(self, *packets):
        """One POST, as the engine flushes its queue: packets joined by 0x1e, a `bytes` as
        `b<base64>`."""
        body = "\x1e".join(
            "b" + base64.b64encode(p).decode() if isinstance(p, bytes) else p for p in packets
        )
        headers = dict(self.headers, **{"Content-Type": "text/plain; charset=UTF-8"})
        with self.post_turn:
            self._log("->", f"POST {body}")
            response = self.posts.post(
                self.url, data=body.encode(), headers=headers, timeout=TIMEOUT
            )
        self._check_answer(response, f"POST {shorten(body, 80)}")
        check(response.text == "ok", f"{self.name}: a POST is answered `ok`: {response.text!r}")

    def next_packet(self, what, timeout=TIMEOUT):
        try:
            packet = self.received.get(timeout=timeout)
        except queue.Empty:
            raise Silence(f"{self.name}: {what}: nothing arrived within {timeout} s") from None
        if isinstance(packet, Failure):
            raise packet
        return packet

    def close(self):
        if self.ended.is_set():
            return
        self.ended.set()
        try:
            self.send("41/,")
            self.send("1")
        except (requests.RequestException, Failure):
            pass
        if self.poller is not None:
            self.poller.join(self.poll_timeout)


def quiet(conn, what, within=QUIET):
    """Nothing but pings arrives on `conn` for `within` seconds."""
    try:
        packet = conn.next_packet(what, timeout=within)
    except Silence:
        return
    raise Failure(f"{conn.name}: {what}: unexpected {shorten(packet)}")


def emit_with_ack(conn, event, data, attachments=()):
    """`emitWithAck(event, data).timingOut(after:)`: the socket's next ack id."""
    ack_id = conn.acks
    conn.acks += 1
    conn.send(event_frame(ack_id, [event, data], len(attachments)), *attachments)
    return ack_id


def connect(cfg, transport, name, token, style):
    payload, params, headers = style(token)
    conn = transport(cfg, name, params, headers)
    upgrades = ["websocket"] if transport is SwiftPolling else []
    check_open(conn.open, cfg, upgrades, name)
    conn.send(connect_frame(payload))
    return conn


def connected(cfg, transport, name, token, style):
    conn = connect(cfg, transport, name, token, style)
    answer = conn.next_packet("the connect answer")
    check(CONNECTED.fullmatch(answer), f"{name}: expected 40{{\"sid\":\"...\"}}, got {answer!r}")
    say(f"{name}: open packet checked, {connect_frame(style(token)[0])} answered {answer}")
    return conn


# ---------------------------------------------------------------------------------------------
# The app's day on one connection


def join(conn, conversation, user, what):
    ack_id = emit_with_ack(conn, "join_conversation", {"conversation_id": conversation})
    joined = success_data(ack_envelope(conn.next_packet(what), ack_id, what), what)
    check(joined.get("conversation_id") == conversation, f"{what}: {shorten(joined)}")
    check(isinstance(joined.get("messages"), list), f"{what}: data.messages: {shorten(joined)}")
    for message in joined["messages"]:
        check_message(message, what, conversation_id=conversation)
    check(
        user["message_id"] in [m["id"] for m in joined["messages"]],
        f"{what}: the conversation's first message is missing: {shorten(joined)}",
    )
    return joined


def chat(cfg, conn, rest):
    """Join, a pushed admin reply, a message, the same message with a `Data` in it, pings, and
    the message again without it: each frame as Swift writes it, each answer checked."""
    user, admin = cfg["user"], cfg["admin"]
    conversation = user["conversation_id"]
    name = conn.name

    join(conn, conversation, user, f"{name}: join_conversation (ack 0)")
    say(f"{name}: 420[\"join_conversation\",...] answered 430[success envelope]")

    reply = rest.send(admin["token"], conversation, "An admin answers " + unique("c"))
    event, pushed = event_of(conn.next_packet("the admin's reply"), f"{name}: the admin's reply")
    check(event == "new_message" and pushed == reply,
          f"{name}: expected new_message {shorten(reply)}, got {event} {shorten(pushed)}")
    say(f"{name}: an admin's REST reply came as 42[\"new_message\",...]")

    client_msg_id = unique("swift")
    message = {"conversation_id": conversation, "content": CONTENT, "message_type": "text",
               "client_msg_id": client_msg_id}
    ack_id = emit_with_ack(conn, "send_message", message)
    what = f"{name}: send_message (ack {ack_id})"
    sent, pushed = ack_and_new_message(
        [conn.next_packet(what), conn.next_packet(what)], ack_id, what
    )
    check_message(sent, what, conversation_id=conversation, sender_role="user",
                  sender_identifier=user["identifier"], message_type="text", content=CONTENT,
                  client_msg_id=client_msg_id)
    check(pushed == sent,
          f"{what}: new_message {shorten(pushed)} differs from the ack {shorten(sent)}")
    say(f"{name}: 421[\"send_message\",...] answered 431[message] and 42[\"new_message\",...]")

    retry_id = unique("swift")
    with_data = {"conversation_id": conversation, "content": CONTENT, "message_type": "text",
                 "client_msg_id": retry_id}
    refusal = send_with_data(conn, with_data, {"_placeholder": True, "num": 0})
    say(f"{name}: 451-{conn.acks - 1}[...] and its attachment answered 43{conn.acks - 1}"
        f"[VALIDATION_ERROR: {refusal['message']!r}], nothing sent")

    # Pings answered `3` keep the connection past pingInterval + pingTimeout without traffic.
    alive = (cfg["ping_interval_ms"] + cfg["ping_timeout_ms"]) / 1000 + 0.5
    pings = conn.pings
    quiet(conn, "while only pings are exchanged", within=alive)
    check(conn.pings - pings >= 2, f"{name}: expected pings every {cfg['ping_interval_ms']} ms, "
          f"got {conn.pings - pings} in {alive} s")
    say(f"{name}: {conn.pings - pings} pings answered 3 over {alive} s kept it open")

    # The same message without the attachment, under the same client_msg_id: it is new (the
    # refused one was not stored) and the connection still carries it.
    ack_id = emit_with_ack(conn, "send_message", with_data)
    what = f"{name}: send_message again (ack {ack_id})"
    again, pushed = ack_and_new_message(
        [conn.next_packet(what), conn.next_packet(what)], ack_id, what
    )
    check_message(again, what, client_msg_id=retry_id, content=CONTENT)
    check(pushed == again and again["id"] > sent["id"],
          f"{what}: expected a new message after {sent['id']}: {shorten(again)}, {shorten(pushed)}")
    say(f"{name}: after the refusal and the pings, 42{ack_id}[...] was sent as message "
        f"{again['id']}")
    conn.close()


def send_with_data(conn, message, placeholder):
    """`emitWithAck("send_message", message + ["blob": Data(...)])`, the placeholder's keys in
    the given order: chatd takes no attachments, so it refuses the message and stores nothing."""
    with_data = dict(message, blob=placeholder)
    ack_id = emit_with_ack(conn, "send_message", with_data, attachments=[PNG_SIGNATURE])
    what = (f"{conn.name}: send_message with a Data attachment, placeholder "
            f"{swift_json(placeholder)}")
    answer = conn.next_packet(what)
    envelope = ack_envelope(answer, ack_id, what) if answer.startswith("43") else None
    accepted = isinstance(envelope, dict) and envelope.get("status") == "success"
    if answer.startswith("42") or accepted:
        raise Failure(
            f"{what}: the message was stored and sent, its attachment dropped, where "
            f'{{"_placeholder":true,"num":0}} gets VALIDATION_ERROR: {shorten(answer)}'
        )
    refusal = check_error(ack_envelope(answer, ack_id, what), "VALIDATION_ERROR", what)
    check("POST /api/chat/upload" in refusal["message"],
          f"{what}: the refusal says how files are sent: {refusal['message']!r}")
    quiet(conn, f"{what}: no new_message for a refused message")
    return refusal


def placeholder_keys_in_either_order(cfg):
    """A Swift dictionary's key order follows the process's random hash seed, and
    JSONSerialization writes that order: on some launches the same emit carries
    `{"num":0,"_placeholder":true}`. It must be answered as the other order is."""
    user = cfg["user"]
    conn = connected(cfg, SwiftWebsocket, "websocket, placeholder num first", user["token"],
                     payload_style)
    message = {"conversation_id": user["conversation_id"], "content": CONTENT,
               "message_type": "text", "client_msg_id": unique("swift")}
    refusal = send_with_data(conn, message, {"num": 0, "_placeholder": True})
    say(f"{conn.name}: answered VALIDATION_ERROR {refusal['message']!r} as well")
    conn.close()


def refused(cfg, transport, name, style, then_token=None):
    """A connect with a token that is no session gets exactly the contract's connect_error."""
    conn = connect(cfg, transport, name, "0" * 64, style)
    answer = conn.next_packet("the connect answer")
    check(REFUSED.fullmatch(answer),
          f"{name}: expected 44{{\"code\":\"UNAUTHORIZED\",\"message\":\"...\"}}, got {answer!r}")
    say(f"{name}: refused with {answer}")
    if then_token is not None:
        # The app answers the `error` event with `connect(withPayload:)` and a fresh token: Swift
        # sends it on the same engine connection.
        conn.send(connect_frame({"token": then_token}))
        answer = conn.next_packet("the second connect answer")
        check(CONNECTED.fullmatch(answer), f"{name}: a second connect got {answer!r}")
        say(f"{name}: a second 40/,{{\"token\":...}} on the same connection connected")
    conn.close()


def main():
    cfg = json.load(sys.stdin)
    user = cfg["user"]
    SECRETS.extend([user["token"], cfg["admin"]["token"]])
    if cfg.get("base64_token"):
        SECRETS.append(cfg["base64_token"])
    say(f"Socket.IO-Client-Swift 16 frames on {cfg.get('backend', '?')} at {cfg['url']}")
    rest = Rest(cfg)
    try:
        for label, style in STYLES:
            conn = connected(cfg, SwiftWebsocket, f"websocket {label}", user["token"], style)
            chat(cfg, conn, rest)
            refused(cfg, SwiftWebsocket, f"websocket {label}, bad token", style,
                    then_token=user["token"] if style is payload_style else None)
        if cfg.get("base64_token"):
            # Escaped as Swift escapes it: `\/` in the payload, `%2B%2F%3D` in the query.
            for label, style in STYLES:
                conn = connected(cfg, SwiftWebsocket, f"websocket {label}, base64 token",
                                 cfg["base64_token"], style)
                join(conn, user["conversation_id"], user, f"{conn.name}: join_conversation")
                say(f"{conn.name}: connected and joined")
                conn.close()
        conn = connected(cfg, SwiftPolling, "polling .connectParams", user["token"], query_style)
        chat(cfg, conn, rest)
        refused(cfg, SwiftPolling, "polling .connectParams, bad token", query_style)
        placeholder_keys_in_either_order(cfg)
    except Exception as error:  # noqa: BLE001 - every failure is reported the same way
        report(error)
        return 1
    finally:
        for conn in CONNECTIONS:
            conn.close()
    say("passed")
    return 0


def report(error):
    out = sys.stderr
    print(masked(f"\nFAILED: {error}"), file=out)
    if not isinstance(error, Failure):
        print(masked(traceback.format_exc()), file=out)
    print("\nsteps:", file=out)
    for line in STEPS:
        print("  " + masked(line), file=out)
    for conn in CONNECTIONS:
        print(f"\nframes of {conn.name} (pings answered: {conn.pings}):", file=out)
        for at, direction, frame in conn.frames:
            text = frame if isinstance(frame, str) else repr(frame)
            print(f"  [{at:7.3f}] {direction} {shorten(masked(text), 600)}", file=out)


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
