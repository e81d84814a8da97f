#!/usr/bin/env node
// Compiles bench/LogReplayer.sol with the repository's pinned solcjs (JS API, written to a file:
// the CLI truncates piped output) into bench/LogReplayer.json {abi, deployedBytecode}.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const src = path.join(__dirname, 'LogReplayer.sol');
const input = {
  language: 'Solidity',
  sources: { 'LogReplayer.sol': { content: fs.readFileSync(src, 'utf8') } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.deployedBytecode.object'] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join('\n'));
  process.exit(1);
}
const c = out.contracts['LogReplayer.sol'].LogReplayer;
fs.writeFileSync(path.join(__dirname, 'LogReplayer.json'),
  JSON.stringify({ abi: c.abi, deployedBytecode: '0x' + c.evm.deployedBytecode.object }, null, 1) + '\n');
console.log('bench/LogReplayer.json written');
