// A Privacy Pass issuer and redeemer built on @cloudflare/privacypass-ts (node:http, loopback).
//
//   node ts_issuer.mjs PORT [--issuer-name NAME] [--voprf-seed HEX]
//
// PORT 0 picks a free port. Prints "listening PORT" once ready. Keys are made at start:
// type 2 an RSA-2048 RSA-PSS/SHA-384 key (publicVerif.Issuer.generateKey, mode PSS), type 1
// a VOPRF(P-384, SHA-384) key from DeriveKeyPair(seed, "PrivacyPass") (RFC 9578 section
// 5.5; the seed is random unless given).
//
//   GET  /.well-known/private-token-issuer-directory   RFC 9578 section 4 directory
//   POST /token-request        application/private-token-request -> ...-response
//                              (publicVerif.Issuer / privateVerif.Issuer .issue)
//   POST /verify               JSON {"token": b64url | "authorization": header value,
//                              "challenge": b64url TokenChallenge (optional)}
//                              -> {"valid": bool, "reason": str}; the authenticator is
//                              checked by privacypass-ts's Origin.verify, the challenge
//                              digest and key id here (the application's part)
//   GET  /challenge?type=T&context=HEX&origin=a,b
//                              -> {"www-authenticate": quoted, "www-authenticate-unquoted"}
//                              made by privacypass-ts's Origin and WWWAuthenticateHeader
//   GET  /healthz

import http from 'node:http';

import { deriveKeyPair, Oprf } from '@cloudflare/voprf-ts';
import {
  AuthorizationHeader,
  WWWAuthenticateHeader,
  privateVerif,
  publicVerif,
} from '@cloudflare/privacypass-ts';

import {
  MediaType,
  PRIVATE_TOKEN_ISSUER_DIRECTORY,
  TYPE_BLIND_RSA,
  TYPE_VOPRF,
  VOPRF_KEY_INFO,
  b64urlDecode,
  b64urlEncode,
  hexDecode,
  own,
  parseArgs,
  tokenTypeEntry,
  verifyTokenBytes,
} from './common.mjs';

const MAX_BODY = 64 * 1024;

async function makeKeys(issuerName, seedHex) {
  const rsaPair = await publicVerif.Issuer.generateKey(publicVerif.BlindRSAMode.PSS, {
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
  });
  const rsaIssuer = new publicVerif.Issuer(
    publicVerif.BlindRSAMode.PSS,
    issuerName,
    rsaPair.privateKey,
    rsaPair.publicKey,
  );
  const rsaTokenKey = await publicVerif.getPublicKeyBytes(rsaPair.publicKey);
  const seed = seedHex ? hexDecode(seedHex) : crypto.getRandomValues(new Uint8Array(48));
  const voprfPair = await deriveKeyPair(
    Oprf.Mode.VOPRF,
    Oprf.Suite.P384_SHA384,
    seed,
    VOPRF_KEY_INFO,
  );
  const voprfIssuer = new privateVerif.Issuer(issuerName, voprfPair.privateKey, voprfPair.publicKey);
  const now = Math.floor(Date.now() / 1000);
  return {
    issuers: { [TYPE_VOPRF]: voprfIssuer, [TYPE_BLIND_RSA]: rsaIssuer },
    tokenKeys: { [TYPE_VOPRF]: own(voprfPair.publicKey), [TYPE_BLIND_RSA]: own(rsaTokenKey) },
    keyIds: {
      [TYPE_VOPRF]: await voprfIssuer.tokenKeyID(),
      [TYPE_BLIND_RSA]: await rsaIssuer.tokenKeyID(),
    },
    verifyKeys: {
      [TYPE_VOPRF]: { privateKey: voprfPair.privateKey, publicKey: voprfPair.publicKey },
      [TYPE_BLIND_RSA]: { publicKey: rsaPair.publicKey, tokenKey: own(rsaTokenKey) },
    },
    notBefore: now - 1,
  };
}

function directoryDocument(keys) {
  return JSON.stringify({
    'issuer-request-uri': '/token-request',
    'token-keys': [TYPE_BLIND_RSA, TYPE_VOPRF].map((t) => ({
      'token-type': t,
      'token-key': b64urlEncode(keys.tokenKeys[t]),
      'not-before': keys.notBefore,
    })),
  });
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(own(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

function mediaType(req) {
  return (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
}

async function issue(keys, body) {
  if (body.length < 3) {
    throw new HttpError(400, 'token request too short');
  }
  const tokenType = (body[0] << 8) | body[1];
  const issuer = keys.issuers[tokenType];
  if (issuer === undefined) {
    throw new HttpError(400, `unsupported token type ${tokenType}`);
  }
  const entry = tokenTypeEntry(tokenType);
  const msgLen = tokenType === TYPE_VOPRF ? entry.Ne : entry.Nk;
  if (body.length !== 3 + msgLen) {
    throw new HttpError(400, `token request of type ${tokenType} must be ${3 + msgLen} bytes`);
  }
  const request =
    tokenType === TYPE_VOPRF
      ? privateVerif.TokenRequest.deserialize(body)
      : publicVerif.TokenRequest.deserialize(entry, body);
  const keyId = keys.keyIds[tokenType];
  if (request.truncatedTokenKeyId !== keyId[keyId.length - 1]) {
    throw new HttpError(400, 'truncated_token_key_id does not match the issuer key');
  }
  let response;
  try {
    response = await issuer.issue(request);
  } catch (err) {
    throw new HttpError(400, `issuance failed: ${err.message}`);
  }
  return response.serialize();
}

async function verify(keys, body) {
  let doc;
  try {
    doc = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
  let tokenBytes;
  if (typeof doc.token === 'string') {
    tokenBytes = b64urlDecode(doc.token);
  } else if (typeof doc.authorization === 'string') {
    // Parse with privacypass-ts's own Authorization parser, trying each supported type.
    let parsed;
    for (const t of [TYPE_VOPRF, TYPE_BLIND_RSA]) {
      try {
        parsed = AuthorizationHeader.parse(tokenTypeEntry(t), doc.authorization);
      } catch {
        parsed = undefined;
      }
      if (parsed !== undefined && parsed.length === 1) {
        break;
      }
    }
    if (parsed === undefined || parsed.length !== 1) {
      return { valid: false, reason: 'Authorization value not understood by privacypass-ts' };
    }
    tokenBytes = parsed[0].token.serialize();
  } else {
    throw new HttpError(400, 'give "token" or "authorization"');
  }
  const challenge = typeof doc.challenge === 'string' ? b64urlDecode(doc.challenge) : undefined;
  return verifyTokenBytes(tokenBytes, keys.verifyKeys, challenge);
}

function challengeHeaders(keys, issuerName, params) {
  const tokenType = Number(params.get('type'));
  if (keys.issuers[tokenType] === undefined) {
    throw new HttpError(400, 'unsupported token type');
  }
  const context = hexDecode(params.get('context') ?? '');
  const origins = params.get('origin') ? params.get('origin').split(',') : undefined;
  const origin =
    tokenType === TYPE_VOPRF
      ? new privateVerif.Origin(origins)
      : new publicVerif.Origin(publicVerif.BlindRSAMode.PSS, origins);
  const challenge = origin.createTokenChallenge(issuerName, context);
  const header = new WWWAuthenticateHeader(challenge, keys.tokenKeys[tokenType], 60);
  return {
    'www-authenticate': header.toString(true),
    'www-authenticate-unquoted': header.toString(),
    challenge: b64urlEncode(challenge.serialize()),
  };
}

function send(res, status, contentType, body) {
  res.writeHead(status, { 'content-type': contentType, 'content-length': body.length });
  res.end(body);
}

function sendJson(res, status, value) {
  send(res, status, 'application/json', Buffer.from(JSON.stringify(value)));
}

async function handle(keys, issuerName, req, res) {
  const url = new URL(req.url, 'http://localhost');
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case `GET ${PRIVATE_TOKEN_ISSUER_DIRECTORY}`:
      return send(
        res,
        200,
        MediaType.PRIVATE_TOKEN_ISSUER_DIRECTORY,
        Buffer.from(directoryDocument(keys)),
      );
    case 'POST /token-request': {
      if (mediaType(req) !== MediaType.PRIVATE_TOKEN_REQUEST) {
        throw new HttpError(415, `content type must be ${MediaType.PRIVATE_TOKEN_REQUEST}`);
      }
      const response = await issue(keys, await readBody(req));
      return send(res, 200, MediaType.PRIVATE_TOKEN_RESPONSE, Buffer.from(response));
    }
    case 'POST /verify':
      return sendJson(res, 200, await verify(keys, await readBody(req)));
    case 'GET /challenge':
      return sendJson(res, 200, challengeHeaders(keys, issuerName, url.searchParams));
    case 'GET /healthz':
      return send(res, 200, 'text/plain', Buffer.from('ok\n'));
    default:
      throw new HttpError(404, `no route ${route}`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const port = Number(args._[0] ?? '0');
  const issuerName = args['issuer-name'] ?? 'ts-issuer.example';
  const keys = await makeKeys(issuerName, args['voprf-seed']);
  const server = http.createServer((req, res) => {
    handle(keys, issuerName, req, res).catch((err) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (!res.headersSent) {
        sendJson(res, status, { status, title: err.message });
      } else {
        res.destroy();
      }
    });
  });
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`ts_issuer: ${err.stack ?? err}\n`);
  process.exit(1);
});
