// Shared helpers of the @cloudflare/privacypass-ts interop scripts (plain ES module, no build).
//
// Byte arrays handed to privacypass-ts are always fresh Uint8Arrays that own their whole
// ArrayBuffer: several of its (de)serializers read `bytes.buffer` from offset 0, so a view
// into a larger buffer (a pooled Node Buffer, a subarray) would be misread.

import {
  MediaType,
  PRIVATE_TOKEN_ISSUER_DIRECTORY,
  Token,
  TOKEN_TYPES,
  privateVerif,
  publicVerif,
  util,
} from '@cloudflare/privacypass-ts';

export { MediaType, PRIVATE_TOKEN_ISSUER_DIRECTORY };

export const TYPE_VOPRF = 0x0001;
export const TYPE_BLIND_RSA = 0x0002;
export const SUPPORTED_TYPES = [TYPE_VOPRF, TYPE_BLIND_RSA];
export const VOPRF_KEY_INFO = new TextEncoder().encode('PrivacyPass'); // RFC 9578 section 5.5

// A Uint8Array that owns its buffer (copies).
export function own(bytes) {
  return new Uint8Array(bytes);
}

// base64url with padding (what RFC 9577 / RFC 9578 use on the wire).
export function b64urlEncode(bytes) {
  const body = Buffer.from(bytes).toString('base64url');
  return body + '='.repeat((4 - (body.length % 4)) % 4);
}

export function b64urlDecode(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) {
    throw new Error(`not base64url: ${String(text).slice(0, 40)}`);
  }
  return own(Buffer.from(text, 'base64url'));
}

export function hexDecode(text) {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) {
    throw new Error(`not hex: ${text.slice(0, 40)}`);
  }
  return own(Buffer.from(text, 'hex'));
}

export function hexEncode(bytes) {
  return Buffer.from(bytes).toString('hex');
}

export function equalBytes(a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

// The privacypass-ts TokenTypeEntry of a supported token type.
export function tokenTypeEntry(tokenType) {
  switch (tokenType) {
    case TYPE_VOPRF:
      return TOKEN_TYPES.VOPRF;
    case TYPE_BLIND_RSA:
      return TOKEN_TYPES.BLIND_RSA;
    default:
      throw new Error(`unsupported token type ${tokenType}`);
  }
}

export function tokenLength(tokenType) {
  const entry = tokenTypeEntry(tokenType);
  return 2 + 32 + 32 + entry.Nid + entry.Nk;
}

// Parse a serialized Token strictly (exact length, supported type) with privacypass-ts.
export function parseToken(bytes) {
  bytes = own(bytes);
  if (bytes.length < 2) {
    throw new Error('token too short');
  }
  const tokenType = (bytes[0] << 8) | bytes[1];
  const entry = tokenTypeEntry(tokenType);
  if (bytes.length !== tokenLength(tokenType)) {
    throw new Error(`token of type ${tokenType} must be ${tokenLength(tokenType)} bytes`);
  }
  return { tokenType, token: Token.deserialize(entry, bytes) };
}

// Parse argv of the form --name value (repeatable names collect into arrays when asked).
export function parseArgs(argv, { repeatable = [] } = {}) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      out._.push(arg);
      continue;
    }
    const name = arg.slice(2);
    const value = argv[i + 1];
    if (value === undefined) {
      throw new Error(`missing value for ${arg}`);
    }
    i++;
    if (repeatable.includes(name)) {
      (out[name] ??= []).push(value);
    } else {
      out[name] = value;
    }
  }
  return out;
}

// Key material a verifier needs, by token type:
//   type 1: { privateKey, publicKey } (VOPRF P-384 scalar / compressed element)
//   type 2: { publicKey: CryptoKey (RSA-PSS), tokenKey: SPKI bytes (id-RSASSA-PSS) }
// Returns { valid, reason }. The challenge check is the application's part of redemption
// (privacypass-ts's Origin.verify checks only the authenticator).
export async function verifyTokenBytes(tokenBytes, keys, challengeBytes) {
  let parsed;
  try {
    parsed = parseToken(tokenBytes);
  } catch (err) {
    return { valid: false, reason: `malformed token: ${err.message}` };
  }
  const { tokenType, token } = parsed;
  const key = keys[tokenType];
  if (key === undefined) {
    return { valid: false, reason: `no key for token type ${tokenType}` };
  }
  if (challengeBytes !== undefined) {
    const digest = await sha256(challengeBytes);
    if (!equalBytes(digest, token.authInput.challengeDigest)) {
      return { valid: false, reason: 'challenge_digest mismatch' };
    }
  }
  const keyId = await sha256(tokenType === TYPE_VOPRF ? key.publicKey : key.tokenKey);
  if (!equalBytes(keyId, token.authInput.tokenKeyId)) {
    return { valid: false, reason: 'token_key_id mismatch' };
  }
  let ok;
  try {
    if (tokenType === TYPE_VOPRF) {
      ok = await new privateVerif.Origin().verify(token, key.privateKey);
    } else {
      ok = await new publicVerif.Origin(publicVerif.BlindRSAMode.PSS).verify(
        token,
        key.publicKey,
      );
    }
  } catch (err) {
    return { valid: false, reason: `verifier error: ${err.message}` };
  }
  return ok ? { valid: true, reason: 'ok' } : { valid: false, reason: 'bad authenticator' };
}

// Import an id-RSASSA-PSS SPKI (the type 2 token-key) as a WebCrypto RSA-PSS public key.
export async function importRsaTokenKey(tokenKey) {
  return crypto.subtle.importKey(
    'spki',
    util.convertRSASSAPSSToEnc(own(tokenKey)),
    TOKEN_TYPES.BLIND_RSA.rsaParams,
    true,
    ['verify'],
  );
}
