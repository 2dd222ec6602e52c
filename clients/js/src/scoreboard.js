// Scoreboard client kit: a dependency-free ES module for browsers and Node 20+.
//
//   import { ScoreboardClient, LiveBoard } from "./scoreboard.js";
//
// REST: every error answer {"success": false, "error": {code, message, details}} is thrown as a
// typed ScoreboardError subclass. Live: LiveBoard speaks the WebSocket protocol of
// /v1/realtime (subscribe, auth, ping) and falls back to the Server-Sent Events stream
// /v1/leaderboard/stream (read with fetch, so it can carry an Authorization header and works in
// Node too); it reconnects with jittered exponential backoff and resumes from the last snapshot
// seq it has (an older or repeated snapshot is not delivered twice). The protocol is described in
// docs/asyncapi.yaml.
//
// Licensed under the Apache License 2.0.

export const VERSION = "0.3.0-dev.0"; // the service's version (tests/scoreboard/test_version.py)
export const GLOBAL_BOARD = "global";
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_FORBIDDEN = 4403;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------
export class ScoreboardError extends Error {
  constructor(status, code, message, details = null) {
    super(`${status} ${code}: ${message}`);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.details = details;
    this.serverMessage = message;
  }
}
/** The service could not be reached, or answered something that is not the JSON envelope. */
export class TransportError extends ScoreboardError {}
export class BadRequest extends ScoreboardError {}
export class Unauthorized extends ScoreboardError {}
export class Forbidden extends ScoreboardError {}
export class NotFound extends ScoreboardError {}
export class Conflict extends ScoreboardError {}
/** 409 action_token_replayed: `original` is the result of the first submission. */
export class ActionTokenReplayed extends Conflict {
  get original() {
    return this.details && typeof this.details === "object" ? this.details : null;
  }
}
/** 429: rate limited or blocked by the fraud engine; `retryAfter` in seconds (or null). */
export class RateLimited extends ScoreboardError {
  constructor(status, code, message, details = null, retryAfter = null) {
    super(status, code, message, details);
    this.retryAfter = retryAfter;
  }
}
export class ServiceUnavailable extends ScoreboardError {}

const ERROR_BY_STATUS = { 400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 503: ServiceUnavailable };

export function errorFromAnswer(status, body, retryAfterHeader = null) {
  const error = body && typeof body === "object" ? body.error : null;
  if (!error || typeof error !== "object") {
    return new TransportError(status, "unexpected_answer", `HTTP ${status} without the error envelope`, body);
  }
  const code = String(error.code ?? "error");
  const message = String(error.message ?? "");
  const details = error.details ?? null;
  if (status === 429) {
    const seconds = /^\d+$/.test(retryAfterHeader ?? "") ? Number(retryAfterHeader) : null;
    return new RateLimited(status, code, message, details, seconds);
  }
  if (status === 409 && code === "action_token_replayed") return new ActionTokenReplayed(status, code, message, details);
  const Kind = ERROR_BY_STATUS[status] ?? ScoreboardError;
  return new Kind(status, code, message, details);
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------
function trimSlash(url) {
  return (url ?? "").replace(/\/+$/, "");
}

export class ScoreboardClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] "https://scores.example.com"; "" (default) = the page's own origin
   * @param {string} [options.accessToken] a player's JWT (ours or an OIDC issuer's) for the calls that need one
   * @param {string} [options.apiKey] a game server's key, for createAction (never ship it to a browser)
   * @param {typeof fetch} [options.fetch]
   * @param {number} [options.timeoutMs]
   */
  constructor({ baseUrl = "", accessToken = null, apiKey = null, fetch: fetchImpl = globalThis.fetch, timeoutMs = 10000 } = {}) {
    this.baseUrl = trimSlash(baseUrl);
    this.accessToken = accessToken;
    this.apiKey = apiKey;
    this.fetch = fetchImpl;
    this.timeoutMs = timeoutMs;
  }

  async request(method, path, { body, query, accessToken, apiKey = false } = {}) {
    let url = this.baseUrl + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== null) params.set(key, String(value));
      const text = params.toString();
      if (text) url += "?" + text;
    }
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = accessToken ?? this.accessToken;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (apiKey) {
      if (!this.apiKey) throw new TypeError("this call needs the game server's apiKey");
      headers["X-API-Key"] = this.apiKey;
    }
    let response;
    try {
      const fetchImpl = this.fetch; // called unbound: a browser's fetch refuses any other `this`
      response = await fetchImpl(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (cause) {
      throw Object.assign(new TransportError(0, "unreachable", `${method} ${url}: ${cause?.message ?? cause}`), { cause });
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (response.ok && answer && answer.success === true) return answer.data;
    throw errorFromAnswer(response.status, answer, response.headers.get("Retry-After"));
  }

  /** GET /v1/leaderboard: {leaderboard: [{rank, user_id, username, score, last_updated}], total_players, last_updated}. */
  leaderboard({ limit } = {}) {
    return this.request("GET", "/v1/leaderboard", { query: { limit } });
  }

  /** POST /v1/scores/update with the player's token; a replay throws ActionTokenReplayed (safe to retry). */
  submitScore(actionToken, { accessToken, actionType, levelId } = {}) {
    const body = { action_token: actionToken };
    const metadata = {};
    if (actionType) metadata.action_type = actionType;
    if (levelId) metadata.level_id = levelId;
    if (Object.keys(metadata).length) body.metadata = metadata;
    return this.request("POST", "/v1/scores/update", { body, accessToken });
  }

  /** POST /v1/actions (game server key): {action_token, action_id, expires_at}. */
  createAction({ userId, actionType, scoreIncrement }) {
    return this.request("POST", "/v1/actions", {
      body: { user_id: userId, action_type: actionType, score_increment: scoreIncrement },
      apiKey: true,
    });
  }

  // Boards: `period` is "current" (default), "previous" or a period key; `userId` may be "me".
  static path(...parts) {
    return "/v1/" + parts.map((part) => encodeURIComponent(part)).join("/");
  }

  /** GET /v1/boards: {boards: [{id, title, sort, operator, period, current_period, next_reset, entry_count, ...}]}. */
  boards() {
    return this.request("GET", "/v1/boards");
  }

  board(board) {
    return this.request("GET", ScoreboardClient.path("boards", board));
  }

  /** POST /v1/boards (game-server key). */
  createBoard(board, fields = {}) {
    return this.request("POST", "/v1/boards", { body: { id: board, ...fields }, apiKey: true });
  }

  /** {entries, entry_count, next_cursor, period}; pass next_cursor back for the next page. */
  boardEntries(board, { limit, cursor, period } = {}) {
    return this.request("GET", ScoreboardClient.path("boards", board, "entries"), { query: { limit, cursor, period } });
  }

  /** {rank, user_id, username, score, entry_count, percentile, last_updated}; NotFound (not_ranked) when absent. */
  playerStanding(board, userId = "me", { period, accessToken } = {}) {
    return this.request("GET", ScoreboardClient.path("boards", board, "players", userId), { query: { period }, accessToken });
  }

  /** {player, entries, period}: the player and their neighbours. */
  around(board, userId = "me", { above, below, period, accessToken } = {}) {
    return this.request("GET", ScoreboardClient.path("boards", board, "around", userId), { query: { above, below, period }, accessToken });
  }

  /** {user_id, standings: [{board, title, period, rank, score, ...}]}: the player on every board. */
  standings(userId = "me", { accessToken } = {}) {
    return this.request("GET", ScoreboardClient.path("players", userId, "standings"), { accessToken });
  }

  /** GET /v1/auth/me: {user_id, username, scopes, issuer} of the token. */
  me({ accessToken } = {}) {
    return this.request("GET", "/v1/auth/me", { accessToken });
  }

  register({ username, email, password }) {
    return this.request("POST", "/v1/auth/register", { body: { username, email, password } });
  }

  /** POST /v1/auth/login: {access, refresh, token_type, expires_in, user_id}. */
  login({ username, password }) {
    return this.request("POST", "/v1/auth/login", { body: { username, password } });
  }

  refresh(refreshToken) {
    return this.request("POST", "/v1/auth/refresh", { body: { refresh: refreshToken } });
  }

  health() {
    return this.request("GET", "/healthz");
  }

  /** A LiveBoard on the same service, with this client's access token. */
  live(options = {}) {
    return new LiveBoard({ baseUrl: this.baseUrl, token: this.accessToken, fetch: this.fetch, ...options });
  }
}

// ---------------------------------------------------------------------------------------------
// Live board
// ---------------------------------------------------------------------------------------------
/** The events a LiveBoard dispatches carry their payload in `detail`. */
export class LiveEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

/** Rank movements between two snapshots of a board, for arrows and announcements. */
export function rankChanges(previous, rows, known = previous.size > 0) {
  const changes = [];
  for (const row of rows) {
    const before = previous.get(row.user_id);
    if (!before) {
      if (known) changes.push({ kind: "entered", user_id: row.user_id, username: row.username, rank: row.rank, old_rank: null, score: row.score, old_score: null });
    } else if (before.rank !== row.rank || before.score !== row.score) {
      const kind = row.rank < before.rank ? "up" : row.rank > before.rank ? "down" : "score";
      changes.push({ kind, user_id: row.user_id, username: row.username, rank: row.rank, old_rank: before.rank, score: row.score, old_score: before.score });
    }
  }
  const shown = new Set(rows.map((row) => row.user_id));
  for (const [userId, before] of previous) {
    if (!shown.has(userId)) changes.push({ kind: "left", user_id: userId, username: before.username, rank: null, old_rank: before.rank, score: null, old_score: before.score });
  }
  return changes;
}

function wsUrlFor(baseUrl) {
  if (baseUrl) return baseUrl.replace(/^http/, "ws") + "/v1/realtime";
  const loc = globalThis.location;
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/v1/realtime";
}

/**
 * A live board. Events (each a LiveEvent with `detail`):
 * - "status": {state: "connecting"|"live"|"reconnecting"|"offline"|"closed", transport}
 * - "snapshot": the board {board, period, seq, leaderboard, total_players, last_updated, published_at}
 *   plus `changes` (rankChanges against the previous snapshot) and `resync` (first of a connection)
 * - "rank": a rank_update of the authenticated player {user_id, rank, old_rank, score}
 * - "auth": {user_id} once the server accepted the token
 * - "subscribed": {board} once the server switched the socket to the board
 * - "servererror": an error message of the server {code, message}
 * - "unauthorized": {code, closeCode}: the token was refused or the board is private; no reconnect
 * - "disconnected": {transport, code | reason}: a connection ended; a reconnect follows
 */
export class LiveBoard extends EventTarget {
  constructor({
    baseUrl = "",
    liveUrl = "", // where the WebSocket connects when not baseUrl: "wss://live.example.com" (a kernel-balanced port)
    board = GLOBAL_BOARD,
    token = null,
    transport = "auto", // "auto" (WebSocket, then SSE), "websocket" or "sse"
    lastSeq = 0, // the seq of the board the caller already shows (e.g. server-rendered)
    WebSocket: WebSocketImpl = globalThis.WebSocket,
    fetch: fetchImpl = globalThis.fetch,
    initialBackoffMs = 500,
    maxBackoffMs = 15000,
    idleTimeoutMs = 60000,
    pingIntervalMs = 25000,
    wsFailuresBeforeSse = 3,
    random = Math.random,
  } = {}) {
    super();
    this.baseUrl = trimSlash(baseUrl);
    this.liveUrl = trimSlash(liveUrl);
    this.board = board || GLOBAL_BOARD;
    this.token = token;
    this.lastSeq = Number(lastSeq) || 0;
    this.WebSocket = WebSocketImpl;
    this.fetch = fetchImpl;
    this.options = { initialBackoffMs, maxBackoffMs, idleTimeoutMs, pingIntervalMs, wsFailuresBeforeSse };
    this.random = random;
    this.transport = transport === "sse" || (transport === "auto" && typeof WebSocketImpl !== "function") ? "sse" : "websocket";
    this.allowFallback = transport === "auto";
    this.state = "idle";
    this.rows = new Map(); // user id -> {rank, score, username} of the last snapshot delivered
    this.delivered = false; // whether a snapshot of this board was delivered (then newcomers "entered")
    this.attempt = 0;
    this.wsFailures = 0;
    this.stopped = true;
    this._timers = new Set();
    this._conn = null;
  }

  /** Listen to an event; returns a function that removes the listener. */
  on(type, listener) {
    const handler = (event) => listener(event.detail, event);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /** Resolves with the next event of `type` (or rejects after timeoutMs). */
  next(type, { timeoutMs = 10000, filter = () => true } = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${timeoutMs} ms`)); }, timeoutMs);
      const off = this.on(type, (detail) => { if (filter(detail)) { clearTimeout(timer); off(); resolve(detail); } });
    });
  }

  _emit(type, detail) {
    this.dispatchEvent(new LiveEvent(type, detail));
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit("status", { state, transport: this.transport });
  }

  _later(fn, ms) {
    const timer = setTimeout(() => { this._timers.delete(timer); fn(); }, ms);
    this._timers.add(timer);
    return timer;
  }

  _clearTimers() {
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
  }

  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    this._setState("connecting");
    this._connect();
    return this;
  }

  stop() {
    this.stopped = true;
    this._clearTimers();
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close();
    this._setState("closed");
  }

  /** Watch another board from now on (the next snapshot is that board's). */
  subscribe(board) {
    this.board = board || GLOBAL_BOARD;
    this.rows = new Map();
    this.delivered = false;
    this.lastSeq = 0;
    if (this._conn && this._conn.kind === "websocket" && this._conn.open) this._conn.send({ type: "subscribe", board: this.board });
    else if (this._conn) this._conn.close(true); // SSE: a new stream with ?board=
  }

  /** Authenticate (or re-authenticate with a fresh token) to receive the player's rank updates. */
  authenticate(token) {
    this.token = token;
    if (this._conn && this._conn.kind === "websocket" && this._conn.open) this._conn.send({ type: "auth", token });
    else if (this._conn) this._conn.close(true);
  }

  _connect() {
    if (this.stopped) return;
    this._conn = this.transport === "websocket" ? this._openWebSocket() : this._openSse();
  }

  _backoffMs() {
    const { initialBackoffMs, maxBackoffMs } = this.options;
    const ceiling = Math.min(maxBackoffMs, initialBackoffMs * 2 ** this.attempt);
    this.attempt += 1;
    return ceiling / 2 + (this.random() * ceiling) / 2; // "equal jitter": never 0, never in lockstep
  }

  _reconnect() {
    if (this.stopped) return;
    this._conn = null;
    this._setState(this.attempt >= 3 ? "offline" : "reconnecting");
    this._later(() => this._connect(), this._backoffMs());
  }

  _refused(code, closeCode) {
    this._emit("unauthorized", { code, closeCode });
    this.stopped = true;
    this._clearTimers();
    this._conn = null;
    this._setState("closed");
  }

  _snapshot(message, first) {
    const board = message.board ?? GLOBAL_BOARD; // servers before the many-boards protocol send none
    if (board !== this.board) return;
    const seq = Number(message.seq) || 0;
    if (!first && seq <= this.lastSeq) return; // already delivered, or overtaken
    if (first && seq === this.lastSeq && seq > 0 && this.rows.size) return; // resumed: nothing new
    const rows = Array.isArray(message.leaderboard) ? message.leaderboard : [];
    const changes = rankChanges(this.rows, rows, this.delivered);
    this.delivered = true;
    this.rows = new Map(rows.map((row) => [row.user_id, { rank: row.rank, score: row.score, username: row.username }]));
    this.lastSeq = first ? seq : Math.max(this.lastSeq, seq); // a lower first seq: the server's counter restarted
    this._emit("snapshot", { ...message, board, period: message.period ?? null, changes, resync: first });
  }

  _message(message, conn) {
    if (!message || typeof message !== "object") return;
    switch (message.type) {
      case "leaderboard_update": {
        // Until the server has switched this socket to our board it may send another board's
        // snapshot (the connect snapshot is global's): that one is neither delivered nor "first".
        if ((message.board ?? GLOBAL_BOARD) !== this.board) return;
        const first = !conn.hadSnapshot;
        conn.hadSnapshot = true;
        this.attempt = 0; // a connection that delivers is a good one
        this._setState("live");
        this._snapshot(message, first);
        break;
      }
      case "rank_update":
        this._emit("rank", message);
        break;
      case "auth_ok":
        this._emit("auth", message);
        break;
      case "subscribed":
        conn.hadSnapshot = false; // the next snapshot is the new board's current state
        this._emit("subscribed", message);
        break;
      case "error":
        this._emit("servererror", message);
        break;
      default:
        break; // pong and anything newer
    }
  }

  _openWebSocket() {
    const conn = { kind: "websocket", open: false, hadSnapshot: false, closedByUs: false };
    let ws;
    try {
      ws = new this.WebSocket(wsUrlFor(this.liveUrl || this.baseUrl));
    } catch {
      if (this._canFallBack()) {
        this._useSse();
        return this._openSse();
      }
      this._later(() => this._reconnect(), 0);
      return null;
    }
    let idleTimer = null;
    let pingTimer = null;
    const idle = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => ws.close(), this.options.idleTimeoutMs);
    };
    conn.send = (payload) => ws.send(JSON.stringify(payload));
    conn.close = (reconnect = false) => {
      conn.closedByUs = !reconnect;
      clearTimeout(idleTimer);
      clearInterval(pingTimer);
      try { ws.close(1000); } catch { /* already closed */ }
    };
    ws.onopen = () => {
      conn.open = true;
      this.wsFailures = 0;
      this._setState("live");
      idle();
      pingTimer = setInterval(() => { if (ws.readyState === 1) conn.send({ type: "ping" }); }, this.options.pingIntervalMs);
      if (this.token) conn.send({ type: "auth", token: this.token });
      if (this.board !== GLOBAL_BOARD) conn.send({ type: "subscribe", board: this.board });
    };
    ws.onmessage = (event) => {
      idle();
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      this._message(message, conn);
    };
    let ended = false;
    const end = (event) => {
      if (ended) return; // browsers fire error then close; Node's WebSocket only error on a refused connection
      ended = true;
      clearTimeout(idleTimer);
      clearInterval(pingTimer);
      if (this._conn === conn) this._conn = null;
      if (conn.closedByUs || this.stopped) return;
      this._emit("disconnected", { transport: "websocket", code: event.code, opened: conn.open });
      if (event.code === CLOSE_UNAUTHORIZED || event.code === CLOSE_FORBIDDEN) {
        this._refused(event.code === CLOSE_UNAUTHORIZED ? "unauthorized" : "forbidden", event.code);
        return;
      }
      if (!conn.open && ++this.wsFailures >= this.options.wsFailuresBeforeSse && this._fallBackToSse()) return;
      this._reconnect();
    };
    ws.onerror = () => {
      if (!conn.open) end({ code: 1006 });
    };
    ws.onclose = (event) => end(event);
    return conn;
  }

  _canFallBack() {
    return this.allowFallback && typeof this.fetch === "function";
  }

  _useSse() {
    this.transport = "sse"; // WebSocket blocked on the way (proxy, firewall): the stream goes through
    this._emit("status", { state: this.state, transport: "sse" });
  }

  _fallBackToSse() {
    if (!this._canFallBack()) return false;
    this._useSse();
    this._connect();
    return true;
  }

  _openSse() {
    const conn = { kind: "sse", open: false, hadSnapshot: false, closedByUs: false };
    const abort = new AbortController();
    let idleTimer = null;
    const idle = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => abort.abort(), this.options.idleTimeoutMs);
    };
    conn.close = (reconnect = false) => {
      conn.closedByUs = !reconnect;
      clearTimeout(idleTimer);
      abort.abort();
    };
    const query = this.board !== GLOBAL_BOARD ? `?board=${encodeURIComponent(this.board)}` : "";
    const headers = { Accept: "text/event-stream" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.lastSeq > 0) headers["Last-Event-ID"] = String(this.lastSeq);
    const run = async () => {
      const fetchImpl = this.fetch; // called unbound: a browser's fetch refuses any other `this`
      const response = await fetchImpl(this.baseUrl + "/v1/leaderboard/stream" + query, {
        headers,
        signal: abort.signal,
        credentials: "same-origin", // the page's sb_access cookie on a private board
        cache: "no-store",
      });
      if (response.status === 401 || response.status === 403) {
        let code = response.status === 401 ? "unauthorized" : "forbidden";
        try { code = (await response.json()).error.code; } catch { /* keep the generic code */ }
        return { refused: code, status: response.status };
      }
      if (!response.ok || !response.body) return {};
      conn.open = true;
      this._setState("live");
      idle();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let event = { type: "message", data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return {};
        idle();
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
          if (line === "") {
            if (event.data.length) {
              let message = null;
              try { message = JSON.parse(event.data.join("\n")); } catch { /* not JSON: ignore */ }
              if (message && !message.type) message.type = event.type;
              this._message(message, conn);
            }
            event = { type: "message", data: [] };
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            const data = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (name === "event") event.type = data;
            else if (name === "data") event.data.push(data);
          }
        }
      }
    };
    run().then(
      (outcome) => {
        clearTimeout(idleTimer);
        if (this._conn === conn) this._conn = null;
        if (conn.closedByUs || this.stopped) return;
        if (outcome.refused) this._refused(outcome.refused, outcome.status);
        else this._reconnect();
      },
      (error) => {
        clearTimeout(idleTimer);
        if (this._conn === conn) this._conn = null;
        if (conn.closedByUs || this.stopped) return;
        this._emit("disconnected", { transport: "sse", reason: String(error?.message ?? error) });
        this._reconnect();
      },
    );
    return conn;
  }
}
