// A push service on this machine for the browser test: the part of Web Push a headless browser
// cannot reach (FCM, Mozilla's autopush). It plays both of its sides:
// - toward Herald's `push` function: an endpoint (`http://127.0.0.1:<port>/push/<name>`, accepted
//   where PUSH_ALLOW_LOOPBACK=true, as under devstack) that answers 201 and keeps what it got;
// - toward the browser: the subscription's keys (`p256dh`, `auth`), so it can decrypt a message
//   (RFC 8291 aes128gcm) as the browser would, and check its VAPID signature (RFC 8292).
// The test then hands the plaintext to the page's service worker with the DevTools protocol
// (ServiceWorker.deliverPushMessage), which is what the browser does with a decrypted push.

import { createECDH, createPublicKey, createDecipheriv, hkdfSync, randomBytes, verify } from 'node:crypto';
import { createServer } from 'node:http';

const b64u = (buf) => Buffer.from(buf).toString('base64url');

/**
 * Decrypts an aes128gcm body (RFC 8188 framing, RFC 8291 keys) for the user agent holding
 * `privateKey` (32 bytes) and `publicKey` (65 bytes, uncompressed) with `auth` (16 bytes).
 * Web Push bodies are one record. Throws on a bad tag, framing or padding.
 */
export function decryptAes128gcm(body, { privateKey, publicKey, auth }) {
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  if (idlen !== 65) throw new Error(`keyid is ${idlen} bytes, not an uncompressed P-256 key`);
  if (record.length > rs || record.length < 17) throw new Error(`one record of at most ${rs} bytes expected, got ${record.length}`);

  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(privateKey);
  const secret = ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), publicKey, asPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', secret, auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));

  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  // The last record ends with the delimiter 0x02, then zero padding.
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end -= 1;
  if (end < 0 || padded[end] !== 2) throw new Error('no last-record delimiter');
  return padded.subarray(0, end);
}

/**
 * Checks `Authorization: vapid t=<JWT>, k=<key>` (RFC 8292): an ES256 JWT signed by `k`, for
 * `audience` (the endpoint's origin), not expired and at most 24 h ahead, with a `sub`.
 * Returns `{key, claims}`; throws saying what is wrong.
 */
export function verifyVapid(header, audience, now = Date.now()) {
  const params = /^vapid\s+(.*)$/i.exec(header ?? '')?.[1] ?? '';
  const { t, k } = Object.fromEntries(params.split(',').map((kv) => kv.trim().split('=', 2)));
  if (!t || !k) throw new Error(`not a vapid authorization: ${header}`);
  const raw = Buffer.from(k, 'base64url');
  if (raw.length !== 65 || raw[0] !== 4) throw new Error('k is not an uncompressed P-256 key');
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33)) }, format: 'jwk' });
  const [h, p, s] = t.split('.');
  const jwtHeader = JSON.parse(Buffer.from(h, 'base64url').toString());
  if (jwtHeader.alg !== 'ES256') throw new Error(`alg ${jwtHeader.alg}`);
  if (!verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))) {
    throw new Error('the VAPID signature does not verify with k');
  }
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  if (claims.aud !== audience) throw new Error(`aud ${claims.aud}, expected ${audience}`);
  const secs = now / 1000;
  if (!(claims.exp > secs && claims.exp <= secs + 24 * 3600 + 60)) throw new Error(`exp ${claims.exp} is not within 24 h`);
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new Error('no sub');
  return { key: k, claims };
}

/**
 * Starts the push service on 127.0.0.1 with a fresh subscription key pair. Returns
 * `{origin, endpoint(name), keys: {p256dh, auth}, received, next(timeoutMs), decrypt(msg), close()}`;
 * `received` holds `{path, headers, body}` of every POST, `next` waits for the next one.
 */
export async function startPushService() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  const received = [];
  const waiters = [];
  let taken = 0;

  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || !req.url.startsWith('/push/')) {
        res.writeHead(404).end();
        return;
      }
      received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201, { location: `${req.url}/m/${received.length}` }).end();
      while (waiters.length > 0 && taken < received.length) waiters.shift()(received[taken++]);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;

  return {
    origin,
    endpoint: (name) => `${origin}/push/${name}`,
    keys: { p256dh: b64u(ecdh.getPublicKey()), auth: b64u(auth) },
    received,
    /** The next message not yet taken, waiting up to `timeoutMs`. */
    next(timeoutMs) {
      if (taken < received.length) return Promise.resolve(received[taken++]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no push message within ${timeoutMs / 1000} s`)), timeoutMs);
        waiters.push((m) => {
          clearTimeout(timer);
          resolve(m);
        });
      });
    },
    decrypt: (message) => decryptAes128gcm(message.body, { privateKey: ecdh.getPrivateKey(), publicKey: ecdh.getPublicKey(), auth }),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
