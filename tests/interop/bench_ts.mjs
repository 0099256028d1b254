// Throughput of @cloudflare/privacypass-ts for the operations bench/tokens.py measures.
//
//   node bench_ts.mjs [--seconds S]
//
// One operation in flight at a time (each awaited before the next), so with
// UV_THREADPOOL_SIZE=1 and the process pinned to one CPU this is one core. Prints JSON:
// {"versions": {...}, "1": {op: ops/s}, "2": {op: ops/s}} with the ops
//   private_op  the issuer's private-key operation alone: RSABSSA BlindSign (type 2),
//               VOPRF BlindEvaluate with its DLEQ proof (type 1)
//   issue       Issuer.issue(TokenRequest)
//   redeem      challenge-digest and key-id checks + Origin.verify(token)
//   round       Client.createTokenRequest + Issuer.issue + Client.finalize
//   client_begin  Client.createTokenRequest alone (the client's blinding step)

import { readFileSync } from 'node:fs';

import { deriveKeyPair, EvaluationRequest, Oprf, VOPRFServer } from '@cloudflare/voprf-ts';
import { TOKEN_TYPES, TokenChallenge, privateVerif, publicVerif } from '@cloudflare/privacypass-ts';

import {
  TYPE_BLIND_RSA,
  TYPE_VOPRF,
  VOPRF_KEY_INFO,
  equalBytes,
  parseArgs,
  sha256,
} from './common.mjs';

const ISSUER_NAME = 'issuer.privproc.local';
const ORIGINS = ['gateway.example'];

async function rate(fn, seconds, minCount = 3) {
  await fn(); // warm up
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000 || count < minCount) {
    await fn();
    count++;
    elapsed = performance.now() - start;
  }
  return (count * 1000) / elapsed;
}

function challenge(tokenType) {
  return new TokenChallenge(tokenType, ISSUER_NAME, new Uint8Array(32).fill(7), ORIGINS);
}

async function setupBlindRsa() {
  const mode = publicVerif.BlindRSAMode.PSS;
  const pair = await publicVerif.Issuer.generateKey(mode, {
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
  });
  const issuer = new publicVerif.Issuer(mode, ISSUER_NAME, pair.privateKey, pair.publicKey);
  const tokenKey = await publicVerif.getPublicKeyBytes(pair.publicKey);
  const suite = TOKEN_TYPES.BLIND_RSA.suite[mode]();
  const origin = new publicVerif.Origin(mode, ORIGINS);
  return {
    newClient: () => new publicVerif.Client(mode),
    issuer,
    tokenKey,
    privateOp: (request) => suite.blindSign(pair.privateKey, request.blindedMsg),
    verify: (token) => origin.verify(token, pair.publicKey),
  };
}

async function setupVoprf() {
  const suiteId = Oprf.Suite.P384_SHA384;
  const seed = crypto.getRandomValues(new Uint8Array(48));
  const pair = await deriveKeyPair(Oprf.Mode.VOPRF, suiteId, seed, VOPRF_KEY_INFO);
  const issuer = new privateVerif.Issuer(ISSUER_NAME, pair.privateKey, pair.publicKey);
  const server = new VOPRFServer(suiteId, pair.privateKey);
  const origin = new privateVerif.Origin(ORIGINS);
  const group = TOKEN_TYPES.VOPRF.group;
  return {
    newClient: () => new privateVerif.Client(),
    issuer,
    tokenKey: pair.publicKey,
    privateOp: (request) =>
      server.blindEvaluate(new EvaluationRequest([group.desElt(request.blindedMsg)])),
    verify: (token) => origin.verify(token, pair.privateKey),
  };
}

async function measure(tokenType, setup, seconds) {
  const chl = challenge(tokenType);
  const challengeDigest = await sha256(chl.serialize());
  const keyId = await sha256(setup.tokenKey);
  const client = setup.newClient();
  const request = await client.createTokenRequest(chl, setup.tokenKey);
  const response = await setup.issuer.issue(request);
  const token = await client.finalize(response);

  const redeem = async () => {
    if (!equalBytes(token.authInput.challengeDigest, challengeDigest)) {
      throw new Error('challenge mismatch');
    }
    if (!equalBytes(token.authInput.tokenKeyId, keyId)) {
      throw new Error('unknown key');
    }
    if (!(await setup.verify(token))) {
      throw new Error('token does not verify');
    }
  };
  const round = async () => {
    const c = setup.newClient();
    const req = await c.createTokenRequest(chl, setup.tokenKey);
    await c.finalize(await setup.issuer.issue(req));
  };
  const clientOnly = async () => {
    const c = setup.newClient();
    await c.createTokenRequest(chl, setup.tokenKey);
    return c;
  };
  return {
    private_op: await rate(() => setup.privateOp(request), seconds),
    issue: await rate(() => setup.issuer.issue(request), seconds),
    redeem: await rate(redeem, seconds),
    round: await rate(round, seconds),
    client_begin: await rate(clientOnly, seconds),
  };
}

function packageVersion(name) {
  const path = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(path, 'utf8')).version;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const seconds = Number(args.seconds ?? '1');
  const out = {
    versions: {
      node: process.version,
      'privacypass-ts': packageVersion('@cloudflare/privacypass-ts'),
      'blindrsa-ts': packageVersion('@cloudflare/blindrsa-ts'),
      'voprf-ts': packageVersion('@cloudflare/voprf-ts'),
    },
    [TYPE_VOPRF]: await measure(TYPE_VOPRF, await setupVoprf(), seconds),
    [TYPE_BLIND_RSA]: await measure(TYPE_BLIND_RSA, await setupBlindRsa(), seconds),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench_ts: ${err.stack ?? err}\n`);
  process.exit(1);
});
