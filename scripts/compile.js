#!/usr/bin/env node
// Compiles contracts/ with the pinned solcjs through its JS API. The solcjs CLI truncates its
// output when piped (TOOLCHAIN.md), so Python never reads compiler output over a pipe: this
// script writes the artifacts to files itself.
//
//   node scripts/compile.js [OUT_DIR]      (default: the repository root, writing abi/ and artifacts/)
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const root = path.resolve(__dirname, '..');
const outDir = path.resolve(process.argv[2] || root);
const CONTRACTS = ['OpinionMarket', 'CreatorShares', 'MockUSDC', 'MockPriceFeed'];
const SETTINGS = {
  optimizer: { enabled: true, runs: 10000 },
  evmVersion: 'cancun',
  viaIR: true,
  metadata: { bytecodeHash: 'none' },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.methodIdentifiers'] } },
};

function listSources(dir, rel = '') {
  const out = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    const key = rel ? `${rel}/${name}` : name;
    if (fs.statSync(full).isDirectory()) Object.assign(out, listSources(full, key));
    else if (name.endsWith('.sol')) out[`contracts/${key}`] = { content: fs.readFileSync(full, 'utf8') };
  }
  return out;
}

function findImports(p) {
  for (const base of [root, path.join(root, 'node_modules')]) {
    const full = path.join(base, p);
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  }
  return { error: `import not found: ${p}` };
}

const input = { language: 'Solidity', sources: listSources(path.join(root, 'contracts')), settings: SETTINGS };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) {
  const file = (e.sourceLocation && e.sourceLocation.file) || '';
  if (e.severity === 'error' || !file.startsWith('@openzeppelin/')) process.stderr.write(e.formattedMessage + '\n');
}
if (errors.length) process.exit(1);

fs.mkdirSync(path.join(outDir, 'abi'), { recursive: true });
fs.mkdirSync(path.join(outDir, 'artifacts'), { recursive: true });
for (const name of CONTRACTS) {
  const file = Object.keys(output.contracts).find((f) => output.contracts[f][name]);
  if (!file) { process.stderr.write(`contract ${name} not found in output\n`); process.exit(1); }
  const c = output.contracts[file][name];
  fs.writeFileSync(path.join(outDir, 'abi', `${name}.json`), JSON.stringify(c.abi, null, 2) + '\n');
  const artifact = {
    contractName: name,
    sourceName: file,
    compiler: { name: 'solcjs', version: solc.version(), settings: SETTINGS },
    abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    methodIdentifiers: c.evm.methodIdentifiers,
  };
  fs.writeFileSync(path.join(outDir, 'artifacts', `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
}
process.stdout.write(`compiled ${CONTRACTS.length} contracts with solc ${solc.version()} into ${outDir}\n`);
