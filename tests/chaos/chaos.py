#!/usr/bin/env python3
"""Crash harness for chatd: real processes, real clients, SIGKILL at random moments.

It starts its own MariaDB (a fresh datadir) and Redis on free ports, never the machine's, and two
`chatd serve` nodes on them. Users and admins write messages over REST and Socket.IO, each with a
client_msg_id and retried with the same id and body until acknowledged, as the iOS client does;
admins also take conversations. A reader socket per conversation (the user's second device) and
an admin socket (the web manager: the staff room, and every conversation joined) collect
`new_message`, send read receipts, and whenever their node dies reconnect to a live node and
rejoin with `since` = the newest id up to which they hold the whole timeline.
Meanwhile chatd nodes are SIGKILLed and restarted at random moments, and mariadbd is SIGKILLed
and restarted (InnoDB crash recovery) a few times.

Afterwards it checks, against the log in MariaDB:
  acked     every acknowledged client_msg_id is in the log exactly once, with the acked message id
  sequence  every stream's sequences are 1..n
  position  positions are unique, gap-free, and increase along each stream's sequence
  readback  the `messages` read tables (live and archive) hold exactly the log's messages
  replay    the read tables equal what `chatd replay` rebuilds from the log, row for row
  audit     `chatd audit verify` finds every hash chain intact
  sealed    no message's text is in the events table in the clear (a master key is configured, so
            the data keys are wrapped too); the log's texts are read back through `chatd audit
            export`, which opens them
  sockets   every reader holds every message of its conversations exactly once, in order, and
            no connection received a broadcast twice or out of order
  clients   no valid request was refused with anything but 429/5xx; no chatd exited on its own
            while the database was up
prints the counts, and exits non-zero when any check fails.

    python3 tests/chaos/chaos.py --chatd target/debug/chatd [--chatd-kills 24] [--mariadb-kills 3]

The run's directory (databases, every process's log) is kept when a check fails or with --keep.
"""

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests
import socketio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "realtime"))
from scenarios import Rest  # noqa: E402 - the signed REST client the Socket.IO tests use

APP_SECRET = "chaos-app-secret-0123456789abcdef"
DATABASE = "chaos"
# Read tables and their primary keys (what `chatd replay` rebuilds).
READ_TABLES = {
    "conversations": "id",
    "conversations_archive": "id",
    "messages": "id",
    "messages_archive": "id",
    "files": "file_id",
    "search_terms": "message_id, term",
    "analytics_facts": "position, kind",
    "analytics_conversations": "conversation_id",
}
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
CALL_TIMEOUT = 8.0  # an ack from a live node; past it the node is taken for dead and the call retried
START = time.monotonic()


def log(text):
    print(f"[{time.monotonic() - START:7.1f}] {text}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def get(self, name):
        with self.lock:
            return self.counts.get(name, 0)


STATS = Stats()
RECORDED_AT = {}  # message id -> when its event was recorded (s since the epoch)
PROBLEMS = []  # what the clients met that no retry should ever meet (unexpected refusals)


def problem(text):
    with STATS.lock:
        PROBLEMS.append(text)
    log(f"PROBLEM: {text}")


# ---------------------------------------------------------------------------------------------
# The servers


class MariaDB:
    def __init__(self, workdir):
        self.datadir = os.path.join(workdir, "mariadb")
        self.port = free_port()
        self.socket = os.path.join(workdir, "mariadb.sock")
        self.log_path = os.path.join(workdir, "mariadb.log")
        self.process = None
        os.makedirs(self.datadir)
        args = [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        with open(os.path.join(workdir, "mariadb-install.log"), "w") as out:
            subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=True)

    def start(self):
        args = [
            "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else "mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={os.path.join(self.datadir, 'mariadbd.pid')}",
            f"--log-error={self.log_path}",
            "--skip-log-bin",
            # What the README asks of production: an acknowledged commit is on disk.
            "--innodb-flush-log-at-trx-commit=1",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=500",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited at start; see {self.log_path}")
            if self.query("select 1", database=None, check=False) is not None:
                return
            time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not answer within 120 s; see {self.log_path}")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def url(self):
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def query(self, sql, database=DATABASE, check=True):
        """Rows as lists of strings (NULL as None), or None when check is False and it failed."""
        args = [
            "mariadb",
            "--protocol=tcp",
            "-h127.0.0.1",
            f"-P{self.port}",
            "-uroot",
            "--connect-timeout=5",
            "--default-character-set=utf8mb4",
            "-N",
            "-B",
            "-e",
            sql,
        ]
        if database:
            args.append(database)
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            if check:
                raise RuntimeError(f"mariadb: {sql}: {done.stderr.strip()}")
            return None
        return [
            [None if field == "NULL" else field for field in line.split("\t")]
            for line in done.stdout.splitlines()
        ]


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", workdir,
                "--logfile", os.path.join(workdir, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis-server did not answer PING within 30 s")

    def url(self):
        return f"redis://127.0.0.1:{self.port}/"

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Node:
    """One chatd process on a fixed port, restartable."""

    def __init__(self, index, binary, workdir, env):
        self.index = index
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = os.path.join(workdir, f"node{index}")
        self.log_path = os.path.join(workdir, f"node{index}.log")
        os.makedirs(self.data_dir)
        self.env = dict(env, CHAT_PORT=str(self.port), CHAT_DATA_DIR=self.data_dir)
        self.process = None
        # Held across kill-and-restart, so the supervisor never starts a second process for a
        # node it sees dead in between.
        self.lock = threading.RLock()
        self.became_ready = False
        self.starts = 0

    def start(self):
        with self.lock:
            out = open(self.log_path, "a")
            out.write(f"\n===== start {self.starts + 1} at {time.monotonic() - START:.1f} s =====\n")
            out.flush()
            self.process = subprocess.Popen(
                [self.binary, "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
            self.became_ready = False
            self.starts += 1

    def kill(self):
        with self.lock:
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def ready(self):
        try:
            ok = requests.get(self.url + "/readyz", timeout=2).status_code == 200
        except Exception:  # noqa: BLE001 - not answering is not ready
            ok = False
        if ok:
            self.became_ready = True
        return ok

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"chatd node {self.index} not ready within {timeout} s; see {self.log_path}")


class Cluster:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.mariadb = self.redis = self.supervisor = None
        self.nodes = []
        self.supervising = threading.Event()
        self.mariadb_down = threading.Event()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        args, workdir = self.args, self.workdir
        log("initialising a private MariaDB")
        self.mariadb = MariaDB(workdir)
        self.mariadb.start()
        self.mariadb.query(f"create database {DATABASE}", database=None)
        self.redis = Redis(workdir)
        log(f"MariaDB on port {self.mariadb.port}, Redis on port {self.redis.port}")
        many = "1000000"
        master_key = os.path.join(workdir, "master.key")
        with open(master_key, "w") as out:
            out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        os.chmod(master_key, 0o600)
        self.env = dict(
            os.environ,
            CHAT_DATABASE_URL=self.mariadb.url(),
            CHAT_REDIS_URL=self.redis.url(),
            CHAT_REDIS_PREFIX="chatd-chaos",
            CHAT_APP_SECRET=APP_SECRET,
            CHAT_ENCRYPTION_KEY_FILE=master_key,
            # Load is the point here, not the per-caller limits.
            CHAT_LIMIT_MESSAGES_PER_MIN=many,
            CHAT_LIMIT_TYPING_PER_MIN=many,
            CHAT_LIMIT_JOINS_PER_MIN=many,
            CHAT_LOG_FORMAT="text",
            RUST_LOG=os.environ.get("RUST_LOG", "info,sqlx=warn"),
        )
        self.nodes = [Node(i, args.chatd, workdir, self.env) for i in (1, 2)]
        # The first node migrates alone, so that two fresh nodes do not race on an empty schema.
        for node in self.nodes:
            node.start()
            node.wait_ready()
        log(f"chatd nodes ready at {', '.join(n.url for n in self.nodes)}")
        self.supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.supervising.set()
        self.supervisor.start()

    def chatd(self, *args, timeout=600):
        env = dict(self.env, CHAT_DATA_DIR=os.path.join(self.workdir, "cli"))
        return subprocess.run(
            [self.args.chatd, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def live_urls(self):
        return [n.url for n in self.nodes if n.alive()] or [n.url for n in self.nodes]

    def kill_node(self, node):
        with node.lock:
            node.kill()
            STATS.add("chatd kills")
            node.start()

    def kill_mariadb(self, down_for):
        self.mariadb_down.set()
        self.mariadb.kill()
        STATS.add("mariadbd kills")
        log(f"mariadbd SIGKILLed; restarting in {down_for:.1f} s")
        time.sleep(down_for)
        started = time.monotonic()
        self.mariadb.start()
        self.mariadb_down.clear()
        log(f"mariadbd back after crash recovery ({time.monotonic() - started:.1f} s)")

    def _supervise(self):
        """A chatd that exits on its own (not killed here) is counted and restarted."""
        while self.supervising.is_set():
            for node in self.nodes:
                with node.lock:
                    exited = node.process.poll() is not None
                    if exited:
                        self._restart_exited(node)
                if not exited and not node.became_ready:
                    node.ready()
            time.sleep(0.2)

    def _restart_exited(self, node):
        code = node.process.returncode
        when = "after it was ready" if node.became_ready else "while starting"
        if node.became_ready and not self.mariadb_down.is_set():
            STATS.add("chatd exits on their own (database up)")
            problem(f"chatd node {node.index} exited with {code} {when}; see {node.log_path}")
        else:
            STATS.add("chatd exits on their own (database down or starting)")
            log(f"chatd node {node.index} exited with {code} {when}; restarting")
        time.sleep(0.5)
        node.start()

    def stop(self):
        self.supervising.clear()
        if self.supervisor:
            self.supervisor.join(5)
        for node in self.nodes:
            node.kill()
        if self.redis:
            self.redis.stop()
        if self.mariadb:
            self.mariadb.stop()


# ---------------------------------------------------------------------------------------------
# Clients


class Acks:
    """Every acknowledged message: client_msg_id -> (conversation id, message id, sender)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_cmid = {}

    def record(self, cmid, conversation_id, message_id, sender, status):
        with self.lock:
            if cmid in self.by_cmid:
                raise RuntimeError(f"{cmid} acknowledged twice by the harness itself")
            self.by_cmid[cmid] = (conversation_id, message_id, sender)
        STATS.add("messages acknowledged")
        if status == 200:
            # The retry found the original: the earlier attempt had committed without an answer.
            STATS.add("acks of a retry that found the original (200)")


def in_arrival_order(sio):
    """python-engineio hands each received message to a new thread, so handlers may run out of
    the order the server sent them in; a device shows them in arrival order, so handle each one
    on the reading thread before reading the next."""
    trigger = sio.eio._trigger_event

    def trigger_in_order(event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return trigger(event, *args, **kwargs)

    sio.eio._trigger_event = trigger_in_order


class SocketClient:
    """A python-socketio client whose calls also end when the connection drops, so that a call
    on a killed node is retried at once rather than after a timeout."""

    def __init__(self, token, on_message=None):
        self.token = token
        self.on_message = on_message
        self.sio = None
        self.connection = 0
        self.dropped = threading.Event()

    def connect(self, urls):
        self.close()
        self.connection += 1
        # One event per connection: a closed connection's late disconnect must not end this one.
        dropped = self.dropped = threading.Event()
        sio = socketio.Client(reconnection=False)
        in_arrival_order(sio)
        connection = self.connection
        if self.on_message:
            sio.on("new_message", lambda message: self.on_message(connection, "broadcast", message))
        sio.on("disconnect", lambda *args: dropped.set())
        url = random.choice(urls)
        sio.connect(url, auth={"token": self.token}, transports=["websocket"], wait_timeout=5)
        self.sio = sio

    def call(self, event, data, on_ack=None):
        """The ack, or None when the connection dropped or no ack came in time."""
        done = threading.Event()
        answer = []

        def callback(*args):
            answer.append(args[0] if args else None)
            if on_ack:
                on_ack(answer[0])
            done.set()

        try:
            self.sio.emit(event, data, callback=callback)
        except Exception:  # noqa: BLE001 - a dead connection
            return None
        deadline = time.monotonic() + CALL_TIMEOUT
        while time.monotonic() < deadline:
            if done.wait(0.05):
                return answer[0]
            if self.dropped.is_set() or not self.sio.connected:
                return answer[0] if answer else None
        return None

    def close(self):
        self.dropped.set()
        if self.sio is not None:
            try:
                self.sio.disconnect()
            except Exception:  # noqa: BLE001
                pass
            self.sio = None


class Writer(threading.Thread):
    """Sends messages one after another, each retried with the same client_msg_id and body until
    acknowledged; stops after its pending message once `stopping` is set."""

    def __init__(self, name, role, token, transport, cluster, acks, targets, stopping, seed,
                 admin_id=None):
        super().__init__(name=name, daemon=True)
        self.role = role
        self.admin_id = admin_id
        self.token = token
        self.transport = transport
        self.cluster = cluster
        self.acks = acks
        self.targets = targets  # the conversation ids it writes into
        self.stopping = stopping
        self.random = random.Random(seed)
        self.rest = {}
        self.socket = SocketClient(token) if transport == "socket" else None
        self.sent = 0
        self.failed = None

    def run(self):
        try:
            while not self.stopping.is_set():
                target = self.random.choice(self.targets)
                if self.role == "admin" and self.random.random() < 0.03:
                    self.assign_to_self(target)
                else:
                    self.send_one(target)
                time.sleep(self.random.uniform(0.02, 0.2))
        except Exception as error:  # noqa: BLE001 - reported with the others
            self.failed = f"{self.name}: {error!r}"
            problem(self.failed)
        finally:
            if self.socket:
                self.socket.close()

    def assign_to_self(self, conversation_id):
        """Takes the conversation (retried until acknowledged), so the log also holds
        assignments for the replay to agree on."""
        path = f"/api/chat/conversations/{conversation_id}/assign"
        for attempt in range(1, 2001):
            url = self.random.choice(self.cluster.live_urls())
            rest = self.rest.get(url) or self.rest.setdefault(url, Rest({"url": url, "secret": APP_SECRET}))
            try:
                status, payload = rest.call("PUT", path, self.token, {"admin_id": self.admin_id})
            except Exception:  # noqa: BLE001 - the node is down
                status, payload = None, None
            if status == 200:
                STATS.add("assignments acknowledged")
                return
            if status is not None and status not in RETRYABLE_STATUSES:
                STATS.add("unexpected refusals")
                problem(f"{self.name}: PUT {path}: {status} {payload!r}")
                return
            STATS.add("retries")
            time.sleep(min(1.0, 0.05 * attempt) * self.random.uniform(0.5, 1.5))
        raise RuntimeError(f"{self.name}: {path} still unacknowledged after 2000 attempts")

    def send_one(self, conversation_id):
        self.sent += 1
        cmid = f"{self.name}-{self.sent}-{uuid.uuid4().hex[:8]}"
        content = f"{self.name} says {self.sent} 你好 {cmid}"
        body = {"content": content, "conversation_id": conversation_id, "client_msg_id": cmid}
        attempts = 0
        while True:
            attempts += 1
            if attempts > 1:
                STATS.add("retries")
            if attempts > 2000:
                raise RuntimeError(f"{cmid} still unacknowledged after 2000 attempts")
            outcome = self.attempt(body)
            if isinstance(outcome, tuple):
                status, message = outcome
                if message.get("id") is None or message.get("client_msg_id") != cmid:
                    problem(f"{self.name}: the ack for {cmid} is not its message: {message!r}")
                    return
                if message.get("conversation_id") != conversation_id:
                    problem(f"{self.name}: {cmid} acked in conversation {message.get('conversation_id')}")
                self.acks.record(cmid, conversation_id, message["id"], self.name, status)
                return
            # Back off briefly, more after repeated failures, as a phone does.
            time.sleep(min(1.0, 0.05 * attempts) * self.random.uniform(0.5, 1.5))

    def attempt(self, body):
        """(status, message) on an ack; None to retry."""
        urls = self.cluster.live_urls()
        if self.transport == "rest":
            url = self.random.choice(urls)
            rest = self.rest.get(url) or self.rest.setdefault(url, Rest({"url": url, "secret": APP_SECRET}))
            try:
                status, payload = rest.call("POST", "/api/chat/messages", self.token, body)
            except Exception:  # noqa: BLE001 - connection refused or reset: the node is down
                return None
            if status in (200, 201) and isinstance(payload, dict) and payload.get("status") == "success":
                return status, payload["data"]
            if status == 500:
                STATS.add("answers 500 (retried)")
            if status not in RETRYABLE_STATUSES:
                STATS.add("unexpected refusals")
                problem(f"{self.name}: POST /api/chat/messages {body['client_msg_id']}: {status} {payload!r}")
            return None
        # Socket.IO send_message: the ack envelope, or none when the node died under it.
        if self.socket.sio is None or not self.socket.sio.connected:
            try:
                self.socket.connect(urls)
                STATS.add("socket writer connects")
            except Exception:  # noqa: BLE001
                return None
        data = dict(body, message_type="text", file_id=None)
        ack = self.socket.call("send_message", data)
        if ack is None:
            self.socket.close()
            return None
        if isinstance(ack, dict) and ack.get("status") == "success":
            return 201, ack["data"]
        if isinstance(ack, dict) and ack.get("error_code") == "INTERNAL":
            STATS.add("answers 500 (retried)")
        if not (isinstance(ack, dict) and ack.get("error_code") in ("UNAVAILABLE", "RATE_LIMITED", "INTERNAL")):
            STATS.add("unexpected refusals")
            problem(f"{self.name}: send_message {body['client_msg_id']}: {ack!r}")
        return None


class Reader(threading.Thread):
    """A device that follows conversations: a user's second phone (their one conversation), or
    the web manager (an admin socket: every conversation's messages come through the staff room;
    it joins each one too, to catch up with `since`). It records every message it receives (join
    answers and broadcasts, per connection) and rejoins with `since` after each drop."""

    def __init__(self, name, token, conversations, other_side, cluster, finished, seed):
        super().__init__(name=name, daemon=True)
        self.token = token
        self.conversations = list(conversations)
        self.other_side = other_side  # whose messages this device marks read
        self.cluster = cluster
        self.finished = finished
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.received = []  # (connection, how, message) in arrival order
        self.held = {c: {} for c in self.conversations}  # the timeline: conversation -> id -> message
        # Per conversation, the newest id up to which the timeline is known whole: what a rejoin
        # asks `since`. Broadcasts on a connection whose join has not been answered do not move
        # it: if the join fails, what came before them is still unknown.
        self.synced = {c: 0 for c in self.conversations}
        self.synced_connection = {c: None for c in self.conversations}
        self.joins = []  # (connection, conversation, since, ids answered, time sent, time answered)
        self.marked = set()  # messages this device has had acknowledged as read
        self.client = SocketClient(token, on_message=self.on_message)
        self.joined = threading.Event()

    def on_message(self, connection, how, message):
        conversation = message.get("conversation_id")
        if conversation not in self.held:
            return
        with self.lock:
            self.received.append((connection, how, message))
            self.held[conversation].setdefault(message["id"], message)
            if connection == self.synced_connection[conversation]:
                self.synced[conversation] = max(self.synced[conversation], message["id"])

    def on_joined(self, connection, conversation, since, messages, sent_at):
        """A successful join's answer, on the client's reading thread."""
        for message in messages:
            self.on_message(connection, "join", message)
        ids = [m["id"] for m in messages]
        with self.lock:
            self.joins.append((connection, conversation, since, ids, sent_at, time.time()))
            self.synced[conversation] = max([since] + ids)
            self.synced_connection[conversation] = connection

    def mark_read(self):
        """Best effort, as on the phone: a receipt lost with its node is sent with the next."""
        conversation = self.random.choice(self.conversations)
        with self.lock:
            unread = [i for i, m in self.held[conversation].items()
                      if m.get("sender_role") == self.other_side and i not in self.marked][-50:]
        if not unread:
            return
        ack = self.client.call("mark_read", {"conversation_id": conversation, "message_ids": unread})
        if isinstance(ack, dict) and ack.get("status") == "success":
            self.marked.update(unread)
            STATS.add("read receipts acknowledged")
        elif isinstance(ack, dict) and ack.get("error_code") not in ("UNAVAILABLE", "RATE_LIMITED"):
            problem(f"{self.name}: mark_read: {ack!r}")

    def last_id(self, conversation):
        with self.lock:
            return max(self.held[conversation], default=0)

    def join(self, conversation):
        """Joins on the current connection until answered; False when the connection dropped."""
        while not self.finished.is_set() and not self.client.dropped.is_set():
            connection = self.client.connection
            with self.lock:
                since = self.synced[conversation]
            sent_at = time.time()

            # Recorded on the client's reading thread, in arrival order with the broadcasts.
            def on_ack(ack, connection=connection, since=since, sent_at=sent_at):
                if isinstance(ack, dict) and ack.get("status") == "success":
                    messages = ack["data"].get("messages", [])
                    self.on_joined(connection, conversation, since, messages, sent_at)

            ack = self.client.call(
                "join_conversation", {"conversation_id": conversation, "since": since}, on_ack=on_ack
            )
            if ack is None:
                return False
            if ack.get("status") == "success":
                if ack["data"].get("has_more"):
                    continue  # more than one join's worth was missed: ask for the rest
                return True
            # Read-your-writes is per node: the other node's read tables may not show the
            # conversation its first message just opened.
            first_join_lags = ack.get("error_code") == "NOT_FOUND" and not self.joined.is_set()
            if ack.get("error_code") != "UNAVAILABLE" and not first_join_lags:
                problem(f"{self.name}: join_conversation {conversation} since {since}: {ack!r}")
            time.sleep(self.random.uniform(0.1, 0.4))
        return False

    def run(self):
        while not self.finished.is_set():
            try:
                self.client.connect(self.cluster.live_urls())
            except Exception:  # noqa: BLE001 - the node is down: try again
                time.sleep(self.random.uniform(0.1, 0.4))
                continue
            if self.client.connection > 1:
                STATS.add("reader reconnects")
            if all(self.join(c) for c in self.conversations):
                self.joined.set()
                while not self.client.dropped.wait(self.random.uniform(0.5, 2.0)):
                    self.mark_read()
            self.client.close()
        self.client.close()


# ---------------------------------------------------------------------------------------------
# The run


def create_session(cluster, user_id, role, identifier):
    done = cluster.chatd(
        "session", "create", "--user-id", str(user_id), "--role", role,
        "--identifier", identifier, "--ttl", "24h", timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chatd session create: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def open_conversation(cluster, name, token):
    """The user's first message, without a conversation id: it opens their conversation."""
    rest = Rest({"url": cluster.nodes[0].url, "secret": APP_SECRET})
    cmid = f"{name}-open-{uuid.uuid4().hex[:8]}"
    body = {"content": f"{name} needs help", "client_msg_id": cmid}
    for _ in range(100):
        try:
            status, payload = rest.call("POST", "/api/chat/messages", token, body)
        except Exception:  # noqa: BLE001
            status, payload = None, None
        if status in (200, 201):
            return cmid, payload["data"]
        time.sleep(0.2)
    raise RuntimeError(f"{name}: could not open a conversation: {status} {payload!r}")


def chaos(cluster, args, rng):
    """SIGKILLs chatd nodes (and a few times mariadbd) at random moments while the load runs."""
    gaps = [rng.uniform(args.min_gap, args.max_gap) for _ in range(args.chatd_kills)]
    span = sum(gaps)
    mariadb_at = sorted(rng.uniform(0.1 * span, 0.9 * span) for _ in range(args.mariadb_kills))
    log(f"chaos: {args.chatd_kills} chatd kills over about {span:.0f} s, mariadbd kills at "
        f"{', '.join(f'{t:.0f}' for t in mariadb_at) or 'none'} s")
    started = time.monotonic()
    for gap in gaps:
        time.sleep(gap)
        while mariadb_at and time.monotonic() - started >= mariadb_at[0]:
            mariadb_at.pop(0)
            cluster.kill_mariadb(rng.uniform(0.5, 3.0))
        # Sometimes both at once: every client must wait for a restart.
        victims = cluster.nodes if rng.random() < 0.1 else [rng.choice(cluster.nodes)]
        for node in victims:
            cluster.kill_node(node)
        log(f"SIGKILL chatd {'+'.join(str(n.index) for n in victims)} "
            f"(kills {STATS.get('chatd kills')}, acked {STATS.get('messages acknowledged')})")
    for _ in mariadb_at:
        cluster.kill_mariadb(rng.uniform(0.5, 3.0))


def wait_projected(cluster, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = cluster.mariadb.query(
            "select (select coalesce(max(position), 0) from events), "
            "(select coalesce(min(position), 0) from projector_state), "
            "(select count(*) from projector_state where last_error is not null)"
        )
        head, slowest, errors = (int(v) for v in rows[0])
        if slowest >= head and int(errors) == 0:
            return head
        time.sleep(0.5)
    raise RuntimeError(f"the projectors did not reach the head within {timeout} s: {rows!r}")


class Checks:
    def __init__(self):
        self.rows = []

    def record(self, name, ok, detail):
        self.rows.append((name, ok, detail))
        log(f"check {name}: {'ok' if ok else 'FAILED'} {detail}")

    def failed(self):
        return [r for r in self.rows if not r[1]]


def sample(items, n=5):
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def logged_texts(cluster, conversations):
    """Message id -> text, as chatd reads the log: the rows hold the text sealed."""
    texts = {}
    for conversation in sorted(conversations):
        done = cluster.chatd("audit", "export", "--conversation", str(conversation))
        if done.returncode != 0:
            raise RuntimeError(f"chatd audit export of {conversation} exited {done.returncode}: {done.stderr[-500:]}")
        for line in done.stdout.splitlines():
            event = json.loads(line)
            if event.get("type") == "MessageSent":
                texts[int(event["payload"]["message_id"])] = event["payload"]["content"]
    return texts


def check_log(cluster, acks, checks):
    events = cluster.mariadb.query(
        "select position, stream_type, stream_id, sequence, event_type, "
        "json_value(payload, '$.message_id'), json_value(payload, '$.client_msg_id'), "
        "json_value(payload, '$.content'), json_exists(payload, '$.sealed'), recorded_at "
        "from events order by position"
    )
    texts = logged_texts(cluster, {int(row[2]) for row in events if row[4] == "MessageSent"})
    messages = {}  # message id -> (conversation id, client_msg_id, content)
    by_cmid = {}
    streams = {}
    positions = []
    in_the_clear = []
    for position, stream_type, stream_id, sequence, event_type, message_id, cmid, stored, sealed, at in events:
        positions.append(int(position))
        streams.setdefault((stream_type, stream_id), []).append((int(sequence), int(position)))
        if event_type == "MessageSent":
            if stored != "" or sealed != "1":
                in_the_clear.append(int(position))
            content = texts.get(int(message_id))
            messages[int(message_id)] = (int(stream_id), cmid, content)
            RECORDED_AT[int(message_id)] = int(at) / 1e6
            if cmid is not None:
                by_cmid.setdefault(cmid, []).append(int(message_id))

    lost, duplicated, wrong = [], [], []
    for cmid, (conversation_id, message_id, _) in acks.by_cmid.items():
        found = by_cmid.get(cmid, [])
        if not found:
            lost.append(cmid)
        elif len(found) > 1:
            duplicated.append((cmid, found))
        elif found[0] != message_id or messages[found[0]][0] != conversation_id:
            wrong.append((cmid, message_id, found[0]))
    STATS.add("messages lost", len(lost))
    STATS.add("messages duplicated", len(duplicated))
    unacked = [c for c in by_cmid if c not in acks.by_cmid]
    STATS.add("messages in the log never acknowledged", len(unacked))
    checks.record(
        "acked",
        not lost and not duplicated and not wrong,
        f"{len(acks.by_cmid)} acknowledged: {len(lost)} lost, {len(duplicated)} duplicated, "
        f"{len(wrong)} with another id"
        + (f"; lost {sample(lost)}" if lost else "")
        + (f"; duplicated {sample(duplicated)}" if duplicated else "")
        + (f"; other id {sample(wrong)}" if wrong else ""),
    )

    checks.record(
        "sealed",
        not in_the_clear,
        f"{len(messages)} messages sealed in the log, {len(texts)} read back through chatd"
        + (f"; in the clear at positions {sample(in_the_clear)}" if in_the_clear else ""),
    )

    gaps, disorder = [], []
    for stream, rows in streams.items():
        rows.sort()
        if [s for s, _ in rows] != list(range(1, len(rows) + 1)):
            gaps.append(stream)
        if any(a[1] >= b[1] for a, b in zip(rows, rows[1:])):
            disorder.append(stream)
    checks.record(
        "sequence",
        not gaps,
        f"{len(streams)} streams, {len(events)} events"
        + (f"; not 1..n: {sample(gaps)}" if gaps else ""),
    )
    gap_free = positions == list(range(1, len(positions) + 1))
    checks.record(
        "position",
        not disorder and gap_free,
        f"positions 1..{len(positions)} {'without' if gap_free else 'WITH'} gaps"
        + (f"; not increasing along: {sample(disorder)}" if disorder else ""),
    )

    table = {int(r[0]): (int(r[1]), r[2], r[3]) for r in cluster.mariadb.query(
        "select id, conversation_id, client_msg_id, content from messages union all "
        "select id, conversation_id, client_msg_id, content from messages_archive")}
    missing = sorted(set(messages) - set(table))
    extra = sorted(set(table) - set(messages))
    differ = sorted(i for i in set(messages) & set(table) if messages[i] != table[i])
    checks.record(
        "readback",
        not missing and not extra and not differ,
        f"messages table {len(table)} rows, log {len(messages)} messages"
        + (f"; missing {sample(missing)}" if missing else "")
        + (f"; extra {sample(extra)}" if extra else "")
        + (f"; differ {sample(differ)}" if differ else ""),
    )
    return messages


def dump_read_tables(cluster):
    return {
        table: cluster.mariadb.query(f"select * from {table} order by {key}")
        for table, key in READ_TABLES.items()
    }


def check_replay(cluster, checks):
    live = dump_read_tables(cluster)
    started = time.monotonic()
    done = cluster.chatd("replay")
    if done.returncode != 0:
        checks.record("replay", False, f"chatd replay exited {done.returncode}: {done.stderr[-2000:]}")
        return
    rebuilt = dump_read_tables(cluster)
    differences = []
    for table in READ_TABLES:
        before = [tuple(r) for r in live[table]]
        after = [tuple(r) for r in rebuilt[table]]
        if before != after:
            only_live = [r for r in before if r not in set(after)]
            only_replay = [r for r in after if r not in set(before)]
            differences.append(
                f"{table}: live {len(before)} rows, replay {len(after)}; "
                f"only live {sample(only_live, 3)}; only replay {sample(only_replay, 3)}"
            )
    counts = ", ".join(f"{t} {len(rows)}" for t, rows in rebuilt.items())
    checks.record(
        "replay",
        not differences,
        f"row for row ({counts}; replay took {time.monotonic() - started:.1f} s)"
        + ("; " + " | ".join(differences) if differences else ""),
    )


def check_audit(cluster, checks):
    done = cluster.chatd("audit", "verify")
    checks.record(
        "audit",
        done.returncode == 0,
        (done.stdout.strip().splitlines() or ["(no output)"])[-1][:500],
    )


def write_reader_logs(readers, path):
    with open(path, "w") as out:
        for reader in readers:
            with reader.lock:
                received = list(reader.received)
                joins = list(reader.joins)
            out.write(f"{reader.name}\n")
            for connection, conversation, since, ids, sent_at, answered_at in joins:
                out.write(
                    f"  connection {connection} join {conversation} since {since} sent {sent_at:.6f} "
                    f"answered {answered_at:.6f} with {len(ids)}: {ids}\n"
                )
            for connection, how, message in received:
                out.write(
                    f"  connection {connection} {how} {message['conversation_id']} {message['id']}\n"
                )


def check_readers(readers, messages, checks, workdir):
    failures = []
    redelivered = 0
    for reader in readers:
        with reader.lock:
            received = list(reader.received)
            joins = list(reader.joins)
            held = {c: dict(m) for c, m in reader.held.items()}
        # The contract: a socket receives each event once, even when it is both in the
        # conversation's room and in the staff room. Per connection, broadcasts are unique and in
        # order. A join's answer may repeat a broadcast that raced it (the socket is in the room
        # before the answer is read), and a rejoin may be answered by a node whose broadcaster is
        # behind: the device merges those by id, so they are counted, not failed.
        per_connection = {}
        for connection, how, message in received:
            if how == "broadcast":
                per_connection.setdefault((connection, message["conversation_id"]), []).append(message["id"])
        for (connection, conversation), ids in per_connection.items():
            if len(ids) != len(set(ids)):
                failures.append(f"{reader.name}: a broadcast of {conversation} twice on connection {connection}: {ids}")
            elif ids != sorted(ids):
                failures.append(f"{reader.name}: broadcasts of {conversation} out of order on connection {connection}: {ids}")
        for connection, conversation, since, ids, _, _ in joins:
            if ids != sorted(set(ids)) or any(i <= since for i in ids):
                failures.append(f"{reader.name}: the join of {conversation} since {since} on connection "
                                f"{connection} answered out of order or at or before since: {ids}")
        redelivered += len(received) - sum(len(m) for m in held.values())
        for conversation, timeline in held.items():
            for message in timeline.values():
                logged = messages.get(message["id"])
                if logged is None or (message.get("conversation_id"), message.get("client_msg_id"),
                                      message.get("content")) != logged:
                    failures.append(f"{reader.name}: message {message['id']} differs from the log: "
                                    f"{message!r} vs {logged!r}")
            # The device shows its timeline in id order: a join's answer can arrive after
            # broadcasts that raced it, so arrival order is not the timeline.
            held_ids = sorted(timeline)
            expected = sorted(i for i, m in messages.items() if m[0] == conversation)
            if held_ids == expected:
                continue
            missing = sorted(set(expected) - set(held_ids))
            unknown = sorted(set(held_ids) - set(expected))
            for message_id in missing[:1]:
                # The evidence: a join asked for everything after `since`, the message was
                # recorded before that join was sent, and the answer lacked it.
                for connection, joined, since, ids, sent_at, _ in joins:
                    if (joined == conversation and since < message_id and message_id not in ids
                            and RECORDED_AT[message_id] < sent_at):
                        failures.append(
                            f"{reader.name}: message {message_id} was recorded at "
                            f"{RECORDED_AT[message_id]:.3f}, {sent_at - RECORDED_AT[message_id]:.3f} s "
                            f"before the join of {conversation} on connection {connection} with since "
                            f"{since} was sent; that join answered {len(ids)} messages without it: "
                            f"{sample(ids, 8)}"
                        )
                        break
            failures.append(
                f"{reader.name} (conversation {conversation}): holds {len(held_ids)}, log has "
                f"{len(expected)}; missing {sample(missing)}; not in the log {sample(unknown)}"
            )
    STATS.add("socket deliveries merged by id (join/broadcast overlap)", redelivered)
    if failures:
        write_reader_logs(readers, os.path.join(workdir, "readers.txt"))
    checks.record(
        "sockets",
        not failures,
        f"{len(readers)} readers ({sum(len(r.conversations) for r in readers)} timelines) hold every "
        "message of their conversations, each once; broadcasts and join answers in order"
        if not failures
        else " | ".join(failures[:10]) + (f" ... ({len(failures)} in all)" if len(failures) > 10 else ""),
    )


def run(args, workdir):
    rng = random.Random(args.seed)
    cluster = Cluster(args, workdir)
    writers, readers = [], []
    stopping, finished = threading.Event(), threading.Event()
    acks = Acks()
    try:
        log(f"creating {args.users} users, {args.admins} admins and their conversations")
        conversations = []
        user_tokens = []
        for i in range(args.users):
            user_id = 1001 + i
            token = create_session(cluster, user_id, "user", f"chaos_user_{user_id}")
            reader_token = create_session(cluster, user_id, "user", f"chaos_user_{user_id}")
            cmid, message = open_conversation(cluster, f"user{user_id}", token)
            acks.record(cmid, message["conversation_id"], message["id"], f"user{user_id}", 201)
            conversations.append(message["conversation_id"])
            user_tokens.append((user_id, token, reader_token))
        for (user_id, _, reader_token), conversation_id in zip(user_tokens, conversations):
            readers.append(Reader(f"reader{user_id}", reader_token, [conversation_id], "admin",
                                  cluster, finished, rng.random()))
        # The web manager: an admin socket in the staff room and in every conversation's room.
        manager_token = create_session(cluster, 9100, "admin", "chaos_manager_9100")
        readers.append(Reader("manager9100", manager_token, conversations, "user", cluster,
                              finished, rng.random()))
        for reader in readers:
            reader.start()
        for reader in readers:
            if not reader.joined.wait(60):
                raise RuntimeError(f"{reader.name} could not join before the chaos began")
        for i, ((user_id, token, _), conversation_id) in enumerate(zip(user_tokens, conversations)):
            transport = "rest" if i % 2 == 0 else "socket"
            writers.append(Writer(f"user{user_id}", "user", token, transport, cluster, acks,
                                  [conversation_id], stopping, rng.random()))
        for i in range(args.admins):
            admin_id = 9001 + i
            token = create_session(cluster, admin_id, "admin", f"chaos_admin_{admin_id}")
            transport = "rest" if i % 2 == 0 else "socket"
            writers.append(Writer(f"admin{admin_id}", "admin", token, transport, cluster, acks,
                                  conversations, stopping, rng.random(), admin_id=admin_id))
        for writer in writers:
            writer.start()
        log(f"{len(writers)} writers and {len(readers)} readers running")
        time.sleep(2)
        chaos_started = time.monotonic()
        chaos(cluster, args, rng)
        log(f"chaos over after {time.monotonic() - chaos_started:.0f} s; draining")
        stopping.set()
        for node in cluster.nodes:
            node.wait_ready()
        for writer in writers:
            writer.join(300)
            if writer.is_alive():
                problem(f"{writer.name} still has an unacknowledged message after 300 s")
        head = wait_projected(cluster)
        log(f"projectors at the head ({head}); waiting for the readers to catch up")
        messages_now = {
            int(r[0]): int(r[1])
            for r in cluster.mariadb.query(
                "select stream_id, max(cast(json_value(payload, '$.message_id') as unsigned)) "
                "from events where event_type = 'MessageSent' group by stream_id")
        }
        deadline = time.monotonic() + 60
        for reader in readers:
            for conversation in reader.conversations:
                target = messages_now.get(conversation, 0)
                while reader.last_id(conversation) < target and time.monotonic() < deadline:
                    time.sleep(0.1)
        finished.set()
        for reader in readers:
            reader.client.close()
            reader.join(10)
        checks = Checks()
        messages = check_log(cluster, acks, checks)
        check_readers(readers, messages, checks, cluster.workdir)
        check_replay(cluster, checks)
        check_audit(cluster, checks)
        if PROBLEMS:
            checks.record("clients", False, f"{len(PROBLEMS)} unexpected answers or exits: {sample(PROBLEMS, 5)}")
        else:
            checks.record("clients", True, "no unexpected refusal, no chatd exit of its own")
        return checks
    finally:
        stopping.set()
        finished.set()
        cluster.stop()


def print_report(checks, elapsed):
    print("\n==== chaos report ====")
    order = [
        "chatd kills",
        "mariadbd kills",
        "chatd exits on their own (database down or starting)",
        "chatd exits on their own (database up)",
        "messages acknowledged",
        "messages lost",
        "messages duplicated",
        "messages in the log never acknowledged",
        "acks of a retry that found the original (200)",
        "assignments acknowledged",
        "read receipts acknowledged",
        "retries",
        "answers 500 (retried)",
        "unexpected refusals",
        "reader reconnects",
        "socket writer connects",
        "socket deliveries merged by id (join/broadcast overlap)",
    ]
    for name in order:
        print(f"  {name:<58} {STATS.get(name):>8}")
    print(f"  {'seconds':<58} {elapsed:>8.0f}")
    print()
    for name, ok, detail in checks.rows:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<10} {detail}")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chatd", default=os.environ.get("CHAT_CHAOS_BINARY", "target/debug/chatd"))
    parser.add_argument("--chatd-kills", type=int, default=int(os.environ.get("CHAT_CHAOS_KILLS", 24)))
    parser.add_argument("--mariadb-kills", type=int,
                        default=int(os.environ.get("CHAT_CHAOS_MARIADB_KILLS", 3)))
    parser.add_argument("--min-gap", type=float, default=1.0, help="shortest pause between kills (s)")
    parser.add_argument("--max-gap", type=float, default=5.0, help="longest pause between kills (s)")
    parser.add_argument("--users", type=int, default=int(os.environ.get("CHAT_CHAOS_USERS", 24)))
    parser.add_argument("--admins", type=int, default=2)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAT_CHAOS_SEED", time.time_ns() % 1_000_000)))
    parser.add_argument("--keep", action="store_true", help="keep the run's directory even when it passes")
    args = parser.parse_args()
    args.chatd = os.path.abspath(args.chatd)
    for binary in ("mariadb-install-db", "mariadb", "redis-server"):
        if shutil.which(binary) is None:
            sys.exit(f"chaos: {binary} not found: install mariadb-server, mariadb-client and redis-server")
    if not (os.path.exists("/usr/sbin/mariadbd") or shutil.which("mariadbd")):
        sys.exit("chaos: mariadbd not found: install mariadb-server")
    if not os.access(args.chatd, os.X_OK):
        sys.exit(f"chaos: no chatd binary at {args.chatd} (cargo build --bin chatd)")
    random.seed(args.seed)
    workdir = tempfile.mkdtemp(prefix="chatd-chaos-")
    log(f"seed {args.seed}, directory {workdir}")
    started = time.monotonic()
    try:
        checks = run(args, workdir)
    except BaseException:
        print(f"chaos: the run did not complete; its directory is kept: {workdir}", file=sys.stderr)
        raise
    print_report(checks, time.monotonic() - started)
    if checks.failed():
        print(f"chaos: FAILED ({len(checks.failed())} checks); seed {args.seed}; logs in {workdir}")
        return 1
    if args.keep:
        print(f"chaos: passed; logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        print("chaos: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
