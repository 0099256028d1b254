// Verify Privacy Pass tokens with @cloudflare/privacypass-ts, for keys made elsewhere.
//
//   node ts_verify.mjs --type 2 --token-key B64URL [--challenge B64URL] TOKEN...
//   node ts_verify.mjs --type 1 --voprf-seed HEX [--voprf-info TEXT] [--token-key B64URL]
//                      [--challenge B64URL] TOKEN...
//
// Type 2 needs the issuer's token-key (the id-RSASSA-PSS SPKI of the directory). Type 1 is
// privately verifiable: it needs the issuer's secret, given as the DeriveKeyPair seed (info
// "PrivacyPass" unless --voprf-info); voprf-ts derives the key pair, and when --token-key
// is also given the derived public key must equal it (so the issuer used the same
// DeriveKeyPair). TOKENs are base64url; "-" reads them from stdin, one per line.
// Prints a JSON list of {"valid": bool, "reason": str}, one per token.

import { readFileSync } from 'node:fs';

import { deriveKeyPair, Oprf } from '@cloudflare/voprf-ts';

import {
  TYPE_BLIND_RSA,
  TYPE_VOPRF,
  VOPRF_KEY_INFO,
  b64urlDecode,
  equalBytes,
  hexDecode,
  importRsaTokenKey,
  own,
  parseArgs,
  verifyTokenBytes,
} from './common.mjs';

async function loadKeys(args) {
  const tokenType = Number(args.type);
  if (tokenType === TYPE_BLIND_RSA) {
    if (args['token-key'] === undefined) {
      throw new Error('type 2 needs --token-key');
    }
    const tokenKey = b64urlDecode(args['token-key']);
    return { [TYPE_BLIND_RSA]: { publicKey: await importRsaTokenKey(tokenKey), tokenKey } };
  }
  if (tokenType === TYPE_VOPRF) {
    if (args['voprf-seed'] === undefined) {
      throw new Error('type 1 needs --voprf-seed');
    }
    const info =
      args['voprf-info'] === undefined ? VOPRF_KEY_INFO : new TextEncoder().encode(args['voprf-info']);
    const pair = await deriveKeyPair(
      Oprf.Mode.VOPRF,
      Oprf.Suite.P384_SHA384,
      hexDecode(args['voprf-seed']),
      info,
    );
    if (args['token-key'] !== undefined && !equalBytes(pair.publicKey, b64urlDecode(args['token-key']))) {
      throw new Error('DeriveKeyPair(seed) gives a public key other than --token-key');
    }
    return { [TYPE_VOPRF]: { privateKey: own(pair.privateKey), publicKey: own(pair.publicKey) } };
  }
  throw new Error('--type must be 1 or 2');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const keys = await loadKeys(args);
  let tokens = args._;
  if (tokens.length === 1 && tokens[0] === '-') {
    tokens = readFileSync(0, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  }
  const challenge = args.challenge === undefined ? undefined : b64urlDecode(args.challenge);
  const results = [];
  for (const text of tokens) {
    let bytes;
    try {
      bytes = b64urlDecode(text);
    } catch (err) {
      results.push({ valid: false, reason: err.message });
      continue;
    }
    results.push(await verifyTokenBytes(bytes, keys, challenge));
  }
  process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch((err) => {
  process.stderr.write(`ts_verify: ${err.stack ?? err}\n`);
  process.exit(1);
});
