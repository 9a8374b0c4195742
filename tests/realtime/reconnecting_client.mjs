// The same app as reconnecting_client.py, on socket.io-client with its default reconnection:
// nothing special on `server_shutdown`. Config on stdin; a JSON summary as the last line; exit
// status 1 (the reason on stderr) when an acknowledged message is missing, doubled or out of order.
import { existsSync, readFileSync } from "node:fs";
import { io } from "socket.io-client";

const ACK_TIMEOUT = 3000;
const FINISH_TIMEOUT = 20000;
const cfg = JSON.parse(readFileSync(0, "utf8"));
const conversation = cfg.conversation_id;
const received = []; // every message as it arrived (join acks and new_message), in wire order
let connects = 0;

const socket = io(cfg.url, { auth: { token: cfg.token } });
socket.on("connect", () => { connects += 1; });
socket.on("new_message", (message) => {
  if (message.conversation_id === conversation) received.push(message);
});
const newest = () => (received.length ? received[received.length - 1].id : cfg.since);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function call(event, data) {
  try {
    return await socket.timeout(ACK_TIMEOUT).emitWithAck(event, data);
  } catch {
    return null; // no ack: the connection went
  }
}

async function rejoin() {
  for (;;) {
    const answer = await call("join_conversation", { conversation_id: conversation, since: newest() });
    if (!answer || answer.status !== "success") return false;
    received.push(...answer.data.messages);
    if (!answer.data.has_more) return true;
  }
}

const acknowledged = [];
let joinedAt = 0;
let n = 0;
let deadline = null;
for (;;) {
  const stopping = existsSync(cfg.stop_file);
  if (stopping && deadline === null) deadline = Date.now() + FINISH_TIMEOUT;
  if (deadline !== null && Date.now() > deadline) break;
  if (!socket.connected) { await sleep(50); continue; }
  if (joinedAt !== connects) {
    const generation = connects;
    if (await rejoin()) joinedAt = generation;
    continue;
  }
  if (stopping) break;
  const pending = `${cfg.prefix}-${n}`;
  const answer = await call("send_message", {
    conversation_id: conversation, message_type: "text", content: `load ${pending}`,
    file_id: null, client_msg_id: pending,
  });
  if (answer && answer.status === "success") {
    acknowledged.push(answer.data.id);
    n += 1;
  } else {
    await sleep(answer ? 100 : 50);
  }
}
// The newest acknowledged messages' new_message may still be on its way.
const settle = Date.now() + ACK_TIMEOUT;
while (Date.now() < settle && acknowledged.some((id) => !received.some((m) => m.id === id))) {
  await sleep(50);
}
socket.disconnect();

const ids = received.map((m) => m.id);
const problems = [];
if (connects < cfg.min_connects) problems.push(`connected ${connects} times, expected at least ${cfg.min_connects}`);
if (joinedAt !== connects) problems.push("never joined again after the last reconnect");
if (ids.some((id, i) => i > 0 && id <= ids[i - 1])) problems.push(`messages not each once and in order: ${ids}`);
const missing = acknowledged.filter((id) => !ids.includes(id));
if (missing.length) problems.push(`acknowledged but never received: ${missing}`);
if (!acknowledged.length) problems.push("nothing was acknowledged");
console.log(JSON.stringify({ connects, acknowledged: acknowledged.length, received: ids.length }));
if (problems.length) {
  console.error(problems.join("; "));
  process.exit(1);
}
process.exit(0);
