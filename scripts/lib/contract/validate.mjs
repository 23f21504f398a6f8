// Validates an AsyncAPI document with the official parser (@asyncapi/parser): the schema, the
// references, and every message example against its payload (the parser's spectral rules).
// Usage: node validate.mjs URL_OR_FILE. Prints each problem, then `asyncapi: N passed, M failed`,
// one count per message plus one for the document as a whole; exits non-zero on any error.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const source = process.argv[2];
const text = /^https?:/.test(source) ? await (await fetch(source)).text() : await readFile(source, "utf8");
const { document, diagnostics } = await new Parser().parse(text);
for (const d of diagnostics) {
    const level = d.severity === DiagnosticSeverity.Error ? "error" : "note";
    console.log(`${level}: ${d.code}: ${d.message} at ${d.path.join(".")}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
const messages = document ? document.components().messages().all().map((m) => m.id()) : [];
const messageErrors = errors.filter((e) => e.path[0] === "components" && e.path[1] === "messages");
const broken = new Set(messageErrors.map((e) => e.path[2]));
// The document as a whole fails on any error that is not about one message.
const documentOk = document !== undefined && messageErrors.length === errors.length;
const failed = broken.size + (documentOk ? 0 : 1);
console.log(`asyncapi: ${messages.length - broken.size + (documentOk ? 1 : 0)} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
