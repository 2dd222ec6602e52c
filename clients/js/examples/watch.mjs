// Watch a board from Node 20+ and print every snapshot and rank update as one JSON line.
//   node --experimental-websocket clients/js/examples/watch.mjs http://127.0.0.1:8000 [board] [token]
// (the token, ours or an OIDC issuer's, adds the player's own rank updates)
import { LiveBoard } from "../src/scoreboard.js";

const [baseUrl = "http://127.0.0.1:8000", board = "global", token = null] = process.argv.slice(2);
const live = new LiveBoard({ baseUrl, board, token });
const print = (kind) => (detail) => console.log(JSON.stringify({ kind, ...detail }));
live.on("status", print("status"));
live.on("snapshot", print("snapshot"));
live.on("rank", print("rank"));
live.on("servererror", print("error"));
live.on("unauthorized", (detail) => {
  print("unauthorized")(detail);
  process.exitCode = 2;
});
process.on("SIGTERM", () => live.stop());
process.on("SIGINT", () => live.stop());
live.start();
