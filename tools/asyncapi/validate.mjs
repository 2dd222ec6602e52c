// Parse and validate an AsyncAPI document with the AsyncAPI parser (its spec schemas and its
// Spectral ruleset). Exit 1 on any error or warning, like the OpenAPI check's --fail-on-warn.
//   node tools/asyncapi/validate.mjs docs/asyncapi.yaml
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "info", "hint"];
const path = process.argv[2] ?? "docs/asyncapi.yaml";
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), { source: path });
let failed = document === undefined;
for (const d of diagnostics) {
  const where = d.path?.length ? d.path.join(".") : "(document)";
  console.log(`${SEVERITY[d.severity] ?? d.severity}: ${d.code}: ${d.message} at ${where}`);
  if (d.severity <= 1) failed = true;
}
if (failed) {
  console.log(`${path}: not valid`);
  process.exit(1);
}
const channels = document.channels().all().map((c) => c.address()).join(", ");
const messages = document.allMessages().all().length;
console.log(`${path}: valid AsyncAPI ${document.version()} (${channels}; ${messages} messages)`);
