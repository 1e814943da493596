#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with the pinned solcjs through standard JSON and writes
// one artifact per contract to protocol/artifacts/<Name>.json ({abi, bytecode,
// deployedBytecode}); protocol/ loads these. `--check` writes nothing and exits 1 when the
// committed artifacts differ from what the sources compile to (CI runs it).
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const solc = require(path.join(root, 'node_modules', 'solc'));

const SRC = path.join(root, 'contracts', 'src');
const OUT = path.join(root, 'protocol', 'artifacts');
// Must match contracts/foundry.toml so forge and this script build the same bytecode.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  viaIR: false,
  metadata: { bytecodeHash: 'none' },
  remappings: ['@openzeppelin/=node_modules/@openzeppelin/'],
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.methodIdentifiers'] } },
};

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.sol') ? [path.join(dir, e.name)] : []);
}

function findImports(p) {
  const mapped = p.startsWith('@openzeppelin/') ? path.join('node_modules', p) : p;
  const full = path.join(root, mapped);
  if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  return { error: 'File not found: ' + p };
}

const sources = {};
for (const f of walk(SRC).sort()) sources[path.relative(root, f)] = { content: fs.readFileSync(f, 'utf8') };
const res = JSON.parse(solc.compile(JSON.stringify({ language: 'Solidity', sources, settings: SETTINGS }), { import: findImports }));
let failed = false;
for (const e of res.errors || []) {
  if (e.severity === 'error') failed = true;
  if (e.severity === 'error' || process.env.SOLC_WARNINGS) fs.writeSync(2, e.formattedMessage + '\n');
}
if (failed) { fs.writeSync(2, 'compile failed\n'); process.exit(1); }

const check = process.argv.includes('--check');
const produced = {};
for (const [file, cs] of Object.entries(res.contracts)) {
  if (!file.startsWith('contracts/src/')) continue;
  for (const [name, c] of Object.entries(cs)) {
    produced[name + '.json'] = JSON.stringify({
      contractName: name,
      sourceName: file,
      compiler: solc.version(),
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      methodIdentifiers: c.evm.methodIdentifiers,
    }, null, 2) + '\n';
  }
}

if (check) {
  const drift = [];
  const existing = fs.existsSync(OUT) ? fs.readdirSync(OUT).filter((f) => f.endsWith('.json')) : [];
  for (const [f, text] of Object.entries(produced)) {
    const p = path.join(OUT, f);
    if (!fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== text) drift.push(f);
  }
  for (const f of existing) if (!(f in produced)) drift.push(f + ' (stale)');
  if (drift.length) {
    fs.writeSync(2, 'Committed artifacts differ from contracts/src: ' + drift.join(', ') + '\nRun `make artifacts` and commit protocol/artifacts/.\n');
    process.exit(1);
  }
  fs.writeSync(1, 'artifacts match sources (' + Object.keys(produced).length + ' contracts)\n');
} else {
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of fs.readdirSync(OUT)) if (f.endsWith('.json') && !(f in produced)) fs.unlinkSync(path.join(OUT, f));
  for (const [f, text] of Object.entries(produced)) fs.writeFileSync(path.join(OUT, f), text);
  fs.writeSync(1, 'wrote ' + Object.keys(produced).length + ' artifacts to protocol/artifacts/\n');
}
