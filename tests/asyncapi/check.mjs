// Parses an AsyncAPI document with the reference parser (@asyncapi/parser) and prints one JSON
// line: how many diagnostics of each severity (0 error, 1 warning, 2 information, 3 hint), the
// first messages, and the operations it found.
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';

const { document, diagnostics } = await new Parser().parse(readFileSync(process.argv[2], 'utf8'));
const bySeverity = [0, 1, 2, 3].map((severity) => diagnostics.filter((d) => d.severity === severity).length);
console.log(JSON.stringify({
  errors: bySeverity[0],
  warnings: bySeverity[1],
  said: diagnostics.slice(0, 20).map((d) => `${d.severity} ${d.code} ${d.path.join('/')}: ${d.message}`),
  operations: document ? document.operations().all().map((operation) => operation.id()) : [],
}));
