// The JS kit against a real Scoreboard server (started by tests/clients/test_js_kit.py, which
// passes SCOREBOARD_URL, SCOREBOARD_ACTION_SECRET and SCOREBOARD_OIDC_TOKEN, a token of a local
// OIDC issuer the server trusts). Run: node --experimental-websocket --test clients/js/test/
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { test } from "node:test";

import {
  ActionTokenReplayed,
  BadRequest,
  LiveBoard,
  ScoreboardClient,
  TransportError,
  Unauthorized,
  VERSION,
  rankChanges,
} from "../src/scoreboard.js";

const BASE = process.env.SCOREBOARD_URL;
const SECRET = process.env.SCOREBOARD_ACTION_SECRET;
const OIDC_TOKEN = process.env.SCOREBOARD_OIDC_TOKEN;
const API_KEY = process.env.SCOREBOARD_API_KEY;
const WAIT = { timeoutMs: 10000 };

const b64 = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

function mintActionToken(userId, scoreIncrement) {
  const claims = {
    action_id: crypto.randomUUID(),
    user_id: userId,
    action_type: "LEVEL_COMPLETION",
    score_increment: scoreIncrement,
    timestamp: Math.floor(Date.now() / 1000),
    nonce: crypto.randomBytes(24).toString("base64url"),
  };
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${input}.${crypto.createHmac("sha256", SECRET).update(input).digest("base64url")}`;
}

let playerCount = 0;
async function newPlayer(client) {
  playerCount += 1;
  const username = `js_${process.pid}_${playerCount}`;
  const password = "correct-horse-battery";
  await client.register({ username, email: `${username}@example.com`, password });
  const pair = await client.login({ username, password });
  return { username, userId: pair.user_id, access: pair.access };
}

async function score(client, player, increment) {
  return client.submitScore(mintActionToken(player.userId, increment), { accessToken: player.access });
}

test("the environment names a server", () => {
  assert.ok(BASE && SECRET && OIDC_TOKEN && API_KEY, "SCOREBOARD_URL, _ACTION_SECRET, _OIDC_TOKEN and _API_KEY must be set");
});

test("REST calls and typed errors", async () => {
  const client = new ScoreboardClient({ baseUrl: BASE });
  const health = await client.health();
  assert.equal(health.version.replace(".dev", "-dev."), VERSION);
  const player = await newPlayer(client);
  const me = await client.me({ accessToken: player.access });
  assert.equal(me.user_id, player.userId);
  assert.equal(me.issuer, null);

  const token = mintActionToken(player.userId, 70);
  const first = await client.submitScore(token, { accessToken: player.access, levelId: "level_3" });
  assert.equal(first.increment, 70);
  const replay = await client.submitScore(token, { accessToken: player.access }).catch((error) => error);
  assert.ok(replay instanceof ActionTokenReplayed);
  assert.equal(replay.status, 409);
  assert.equal(replay.original.new_score, first.new_score);

  const wrong = await client.login({ username: player.username, password: "not-the-password" }).catch((e) => e);
  assert.ok(wrong instanceof Unauthorized);
  assert.equal(wrong.code, "invalid_credentials");
  const badLimit = await client.leaderboard({ limit: 0 }).catch((e) => e);
  assert.ok(badLimit instanceof BadRequest);
  const unreachable = await new ScoreboardClient({ baseUrl: "http://127.0.0.1:9", timeoutMs: 2000 }).health().catch((e) => e);
  assert.ok(unreachable instanceof TransportError);
  const board = await client.leaderboard({ limit: 100 });
  assert.ok(board.leaderboard.some((row) => row.user_id === player.userId));
});

for (const transport of ["websocket", "sse"]) {
  test(`live board over ${transport}: snapshot on connect, then the change`, async () => {
    const client = new ScoreboardClient({ baseUrl: BASE });
    const live = client.live({ transport });
    const statuses = [];
    live.on("status", ({ state }) => statuses.push(state));
    try {
      live.start();
      const initial = await live.next("snapshot", WAIT);
      assert.equal(initial.board, "global");
      assert.equal(initial.resync, true);
      assert.equal(live.transport, transport);
      const player = await newPlayer(client);
      const arrived = live.next("snapshot", { ...WAIT, filter: (s) => s.leaderboard.some((r) => r.user_id === player.userId) });
      await score(client, player, 900); // a handful of players: a newcomer always enters the top 10
      const snapshot = await arrived;
      assert.ok(snapshot.seq > initial.seq);
      assert.ok(snapshot.changes.some((c) => c.user_id === player.userId && c.kind === "entered"));
      assert.ok(statuses.includes("live"));
    } finally {
      live.stop();
    }
  });
}

test("board reads over REST", async () => {
  const client = new ScoreboardClient({ baseUrl: BASE, apiKey: API_KEY });
  const created = await client.createBoard("js-daily", { title: "JS daily", period: "daily" });
  assert.match(created.current_period.key, /^\d{4}-\d{2}-\d{2}$/);
  assert.ok((await client.boards()).boards.some((b) => b.id === "js-daily"));
  const player = await newPlayer(client);
  await score(client, player, 321);
  const page = await client.boardEntries("js-daily", { limit: 5 });
  assert.ok(page.entries.some((e) => e.user_id === player.userId && e.score === 321));
  const mine = await client.playerStanding("js-daily", "me", { accessToken: player.access });
  assert.equal(mine.user_id, player.userId);
  const around = await client.around("js-daily", player.userId, { above: 1, below: 1 });
  assert.equal(around.player.user_id, player.userId);
  const standings = await client.standings("me", { accessToken: player.access });
  assert.ok(standings.standings.some((s) => s.board === "js-daily"));
  const missing = await client.boardEntries("no-such-board").catch((e) => e);
  assert.equal(missing.status, 404);
});

for (const transport of ["websocket", "sse"]) {
  test(`subscribing to another board over ${transport}: its snapshots, with board and period`, async () => {
    const client = new ScoreboardClient({ baseUrl: BASE, apiKey: API_KEY });
    const id = `js-${transport}`;
    const board = await client.createBoard(id, { title: id, period: "monthly" });
    const live = client.live({ transport, board: id });
    try {
      live.start();
      const initial = await live.next("snapshot", WAIT);
      assert.equal(initial.board, id);
      assert.equal(initial.period, board.current_period.key);
      const player = await newPlayer(client);
      const arrived = live.next("snapshot", { ...WAIT, filter: (s) => s.leaderboard.some((r) => r.user_id === player.userId) });
      await score(client, player, 640);
      const snapshot = await arrived;
      assert.equal(snapshot.board, id);
    } finally {
      live.stop();
    }
  });
}

test("liveUrl: the WebSocket goes there, REST and SSE stay on baseUrl", async () => {
  const opened = [];
  class RecordingWebSocket extends globalThis.WebSocket {
    constructor(url) {
      opened.push(url);
      super(url.replace("ws://live.invalid", BASE.replace(/^http/, "ws")));
    }
  }
  const live = new LiveBoard({ baseUrl: BASE, liveUrl: "ws://live.invalid/", WebSocket: RecordingWebSocket, transport: "websocket" });
  try {
    live.start();
    await live.next("snapshot", WAIT);
    assert.deepEqual(opened, ["ws://live.invalid/v1/realtime"]);
  } finally {
    live.stop();
  }
});

test("auto falls back to SSE when WebSocket cannot connect", async () => {
  class BlockedWebSocket extends globalThis.WebSocket {
    constructor() {
      super("ws://127.0.0.1:9/v1/realtime"); // a real connection that is refused
    }
  }
  const live = new LiveBoard({ baseUrl: BASE, WebSocket: BlockedWebSocket, initialBackoffMs: 20, maxBackoffMs: 40 });
  try {
    live.start();
    const snapshot = await live.next("snapshot", WAIT);
    assert.equal(live.transport, "sse");
    assert.equal(snapshot.resync, true);
  } finally {
    live.stop();
  }
});

test("an external (OIDC) player authenticates on the socket and gets its rank updates", async () => {
  const client = new ScoreboardClient({ baseUrl: BASE, accessToken: OIDC_TOKEN });
  const me = await client.me();
  assert.ok(me.issuer, "the token comes from the configured external issuer");
  const live = client.live({ transport: "websocket" });
  try {
    live.start();
    const auth = await live.next("auth", WAIT);
    assert.equal(auth.user_id, me.user_id);
    const rank = live.next("rank", WAIT);
    await client.submitScore(mintActionToken(me.user_id, 5));
    const update = await rank;
    assert.equal(update.user_id, me.user_id);
    assert.ok(update.score >= 5);
  } finally {
    live.stop();
  }
});

test("a refused token stops the live board (no reconnect loop)", async () => {
  const live = new LiveBoard({ baseUrl: BASE, token: "not-a-jwt", transport: "websocket" });
  const refused = live.next("unauthorized", WAIT);
  live.start();
  const detail = await refused;
  assert.equal(detail.closeCode, 4401);
  assert.equal(live.state, "closed");
});

test("after a dropped connection it reconnects and resumes from the last seq", async () => {
  const client = new ScoreboardClient({ baseUrl: BASE });
  const live = client.live({ transport: "websocket", initialBackoffMs: 50, maxBackoffMs: 100 });
  const seen = [];
  live.on("snapshot", (s) => seen.push(s.seq));
  try {
    live.start();
    await live.next("snapshot", WAIT);
    const statuses = [];
    live.on("status", ({ state }) => statuses.push(state));
    const back = live.next("status", { ...WAIT, filter: ({ state }) => state === "live" });
    live._conn.close(true); // the network drops the socket
    await back;
    assert.ok(statuses.includes("reconnecting"));
    const player = await newPlayer(client);
    const arrived = live.next("snapshot", { ...WAIT, filter: (s) => s.leaderboard.some((r) => r.user_id === player.userId) });
    await score(client, player, 800);
    await arrived;
    assert.equal(new Set(seen).size, seen.length, `a snapshot was delivered twice: ${seen}`);
    assert.deepEqual([...seen].sort((a, b) => a - b), seen, "snapshots arrive in seq order");
  } finally {
    live.stop();
  }
});

test("backoff doubles up to the ceiling with jitter in its upper half", () => {
  const values = [0, 1, 0.5, 0, 1, 1, 1];
  const live = new LiveBoard({ baseUrl: "http://x", initialBackoffMs: 100, maxBackoffMs: 1000, random: () => values.shift() });
  const waits = Array.from({ length: 7 }, () => live._backoffMs());
  assert.deepEqual(waits, [50, 200, 300, 400, 1000, 1000, 1000]);
});

test("snapshots of another board, stale seqs and a resumed seq are not delivered", () => {
  const live = new LiveBoard({ baseUrl: "http://x", lastSeq: 7 });
  const got = [];
  live.on("snapshot", (s) => got.push([s.board, s.seq, s.resync]));
  const rows = [{ rank: 1, user_id: "a", username: "A", score: 5 }];
  live._snapshot({ type: "leaderboard_update", seq: 8, board: "weekly", leaderboard: rows }, true);
  live._snapshot({ type: "leaderboard_update", seq: 8, leaderboard: rows }, true); // no board: global
  live._snapshot({ type: "leaderboard_update", seq: 6, board: "global", leaderboard: rows }, false);
  live._snapshot({ type: "leaderboard_update", seq: 8, board: "global", leaderboard: rows }, true); // reconnect, same seq
  live._snapshot({ type: "leaderboard_update", seq: 9, board: "global", period: "all", leaderboard: rows }, false);
  assert.deepEqual(got, [["global", 8, true], ["global", 9, false]]);
});

test("rank changes between two snapshots", () => {
  const before = new Map([
    ["a", { rank: 1, score: 10, username: "A" }],
    ["b", { rank: 2, score: 8, username: "B" }],
    ["c", { rank: 3, score: 5, username: "C" }],
  ]);
  const after = [
    { rank: 1, user_id: "b", username: "B", score: 12 },
    { rank: 2, user_id: "a", username: "A", score: 10 },
    { rank: 3, user_id: "d", username: "D", score: 9 },
  ];
  const kinds = Object.fromEntries(rankChanges(before, after).map((c) => [c.user_id, c.kind]));
  assert.deepEqual(kinds, { b: "up", a: "down", d: "entered", c: "left" });
});
