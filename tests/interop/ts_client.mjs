// Privacy Pass client built on @cloudflare/privacypass-ts, pointed at any RFC 9578 issuer.
//
//   node ts_client.mjs --issuer URL --bearer TOKEN --type 1|2 --count N
//       ( --issuer-name NAME [--context HEX] [--origin-info a,b]
//       | --www-authenticate 'PrivateToken challenge="...", token-key="..."' )
//
// Fetches URL/.well-known/private-token-issuer-directory, takes the first key of the type
// (whose not-before has passed), builds the TokenChallenge (from the parameters, or parsed
// from a WWW-Authenticate value with privacypass-ts's parser, whose token-key must then
// equal the directory's), and for each of N tokens: createTokenRequest, POST it to the
// issuer-request-uri with `Authorization: Bearer TOKEN` (privacypass-ts's sendTokenRequest,
// which also insists on the response media type), deserializeTokenResponse, finalize.
//
// Prints one JSON object: {"token_type", "token_key", "challenge", "tokens": [b64url],
// "authorization": [quoted header values], "authorization_unquoted": [...]}.

import {
  AuthorizationHeader,
  TokenChallenge,
  WWWAuthenticateHeader,
  privateVerif,
  publicVerif,
  sendTokenRequest,
} from '@cloudflare/privacypass-ts';

import {
  MediaType,
  PRIVATE_TOKEN_ISSUER_DIRECTORY,
  SUPPORTED_TYPES,
  TYPE_VOPRF,
  b64urlDecode,
  b64urlEncode,
  equalBytes,
  hexDecode,
  own,
  parseArgs,
} from './common.mjs';

async function fetchDirectory(issuerUrl) {
  const url = new URL(PRIVATE_TOKEN_ISSUER_DIRECTORY, issuerUrl);
  const res = await fetch(url, { headers: { Accept: MediaType.PRIVATE_TOKEN_ISSUER_DIRECTORY } });
  if (res.status !== 200) {
    throw new Error(`issuer directory: HTTP ${res.status} from ${url}`);
  }
  const contentType = (res.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (contentType !== MediaType.PRIVATE_TOKEN_ISSUER_DIRECTORY) {
    throw new Error(`issuer directory: unexpected content type ${contentType}`);
  }
  const doc = await res.json();
  if (typeof doc['issuer-request-uri'] !== 'string' || !Array.isArray(doc['token-keys'])) {
    throw new Error('issuer directory: missing issuer-request-uri or token-keys');
  }
  return doc;
}

function selectKey(directory, tokenType) {
  const now = Math.floor(Date.now() / 1000);
  const entry = directory['token-keys'].find(
    (k) => k['token-type'] === tokenType && (k['not-before'] === undefined || k['not-before'] <= now),
  );
  if (entry === undefined) {
    throw new Error(`issuer directory has no usable key of type ${tokenType}`);
  }
  return b64urlDecode(entry['token-key']);
}

function buildChallenge(args, tokenType, tokenKey) {
  if (args['www-authenticate'] !== undefined) {
    const parsed = WWWAuthenticateHeader.parse(args['www-authenticate']).filter(
      (h) => h.challenge.tokenType === tokenType,
    );
    if (parsed.length === 0) {
      throw new Error(`no PrivateToken challenge of type ${tokenType} in WWW-Authenticate`);
    }
    if (!equalBytes(parsed[0].tokenKey, tokenKey)) {
      throw new Error('WWW-Authenticate token-key differs from the issuer directory key');
    }
    return parsed[0].challenge;
  }
  if (args['issuer-name'] === undefined) {
    throw new Error('give --issuer-name or --www-authenticate');
  }
  const context = hexDecode(args.context ?? '');
  const origins = args['origin-info'] ? args['origin-info'].split(',') : undefined;
  return new TokenChallenge(tokenType, args['issuer-name'], context, origins);
}

function newClient(tokenType) {
  return tokenType === TYPE_VOPRF
    ? new privateVerif.Client()
    : new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tokenType = Number(args.type);
  if (!SUPPORTED_TYPES.includes(tokenType)) {
    throw new Error(`--type must be one of ${SUPPORTED_TYPES.join(', ')}`);
  }
  const count = Number(args.count ?? '1');
  const directory = await fetchDirectory(args.issuer);
  const tokenKey = selectKey(directory, tokenType);
  const challenge = buildChallenge(args, tokenType, tokenKey);
  const requestUrl = new URL(directory['issuer-request-uri'], args.issuer);
  const tokens = [];
  const authorization = [];
  const unquoted = [];
  for (let i = 0; i < count; i++) {
    const client = newClient(tokenType);
    const request = await client.createTokenRequest(challenge, own(tokenKey));
    const headers = new Headers();
    if (args.bearer !== undefined) {
      headers.append('Authorization', `Bearer ${args.bearer}`);
    }
    const responseBytes = await sendTokenRequest(request.serialize(), requestUrl, headers);
    const token = await client.finalize(client.deserializeTokenResponse(own(responseBytes)));
    tokens.push(b64urlEncode(token.serialize()));
    authorization.push(new AuthorizationHeader(token).toString(true));
    unquoted.push(new AuthorizationHeader(token).toString());
  }
  const out = {
    token_type: tokenType,
    token_key: b64urlEncode(tokenKey),
    challenge: b64urlEncode(challenge.serialize()),
    tokens,
    authorization,
    authorization_unquoted: unquoted,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`ts_client: ${err.stack ?? err}\n`);
  process.exit(1);
});
