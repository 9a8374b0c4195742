#!/usr/bin/env python3
"""A chat app as python-socketio ships it: default reconnection, nothing special on
`server_shutdown`. Run by tests/api/shutdown.rs across rolling restarts.

Config on stdin: {"url", "token", "conversation_id", "since", "prefix", "stop_file",
"min_connects"}. Until `stop_file` exists it sends messages one after another with a
`client_msg_id`, sending the same one again (after a reconnect) until it is acknowledged; after
every connect it joins with `since` = the newest message it holds. Then it checks that it holds
every acknowledged message exactly once, in order, and prints a JSON summary as its last line.
Exit status 1 (with the reason on stderr) when it does not.
"""

import json
import os
import sys
import threading
import time

import socketio

ACK_TIMEOUT = 3.0
FINISH_TIMEOUT = 20.0

cfg = json.load(sys.stdin)
conversation = cfg["conversation_id"]
sio = socketio.Client()  # reconnection on, default delays
lock = threading.Lock()
received = []  # every message as it arrived (join acks and new_message), in wire order
connects = 0


def newest():
    with lock:
        return received[-1]["id"] if received else cfg["since"]


@sio.event
def connect():
    global connects
    with lock:
        connects += 1


@sio.on("new_message")
def on_new_message(message):
    if message.get("conversation_id") == conversation:
        with lock:
            received.append(message)


def rejoin():
    """Joins with `since` until caught up; the ack's messages are kept by the callback, which
    runs where new_message events are handled, so both stay in wire order."""
    while True:
        done = threading.Event()
        answer = {}

        def on_ack(response):
            if response.get("status") == "success":
                with lock:
                    received.extend(response["data"]["messages"])
            answer.update(response)
            done.set()

        sio.emit("join_conversation", {"conversation_id": conversation, "since": newest()},
                 callback=on_ack)
        if not done.wait(ACK_TIMEOUT) or answer.get("status") != "success":
            return False  # lost connection or UNAVAILABLE: try again
        if not answer["data"].get("has_more"):
            return True


def main():
    # The first connect is the app's own call (the library retries only after a connection):
    # a node still restarting from an earlier step refuses it, so the app tries again.
    for attempt in range(50):
        try:
            sio.connect(cfg["url"], auth={"token": cfg["token"]})
            break
        except socketio.exceptions.ConnectionError:
            if attempt == 49:
                raise
            time.sleep(0.2)
    acknowledged, joined_at, n = [], 0, 0
    pending = f"{cfg['prefix']}-{n}"
    deadline = None
    while True:
        stopping = os.path.exists(cfg["stop_file"])
        if stopping and deadline is None:
            deadline = time.monotonic() + FINISH_TIMEOUT
        if deadline is not None and time.monotonic() > deadline:
            break
        if not sio.connected:
            time.sleep(0.05)
            continue
        if joined_at != connects:
            generation = connects
            if rejoin():
                joined_at = generation
            continue
        if stopping:
            break
        try:
            response = sio.call("send_message", {
                "conversation_id": conversation, "message_type": "text",
                "content": f"load {pending}", "file_id": None, "client_msg_id": pending,
            }, timeout=ACK_TIMEOUT)
        except Exception:  # noqa: BLE001 - no ack: the connection went; send it again
            time.sleep(0.05)
            continue
        if response.get("status") == "success":
            acknowledged.append(response["data"]["id"])
            n += 1
            pending = f"{cfg['prefix']}-{n}"
        else:
            time.sleep(0.1)
    # The newest acknowledged messages' new_message may still be on its way.
    settle = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < settle:
        with lock:
            if set(acknowledged) <= {m["id"] for m in received}:
                break
        time.sleep(0.05)
    sio.disconnect()

    ids = [m["id"] for m in received]
    summary = {"connects": connects, "acknowledged": len(acknowledged), "received": len(ids)}
    problems = []
    if connects < cfg["min_connects"]:
        problems.append(f"connected {connects} times, expected at least {cfg['min_connects']}")
    if joined_at != connects:
        problems.append("never joined again after the last reconnect")
    if ids != sorted(set(ids)):
        problems.append(f"messages not each once and in order: {ids}")
    missing = sorted(set(acknowledged) - set(ids))
    if missing:
        problems.append(f"acknowledged but never received: {missing}")
    if not acknowledged:
        problems.append("nothing was acknowledged")
    print(json.dumps(summary), flush=True)
    if problems:
        print("; ".join(problems), file=sys.stderr)
        sys.exit(1)


main()
