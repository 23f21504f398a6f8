// The browser test's push service checks what Herald sends; these check the checker: RFC 8291's
// own example decrypts, a tampered body does not, and VAPID tokens are verified for real.
// Run: node --test web/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';

import { decryptAes128gcm, verifyVapid } from './push-service.mjs';

// RFC 8291, Appendix A (published test data).
const RFC = {
  uaPrivate: 'q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94',
  uaPublic: 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4',
  auth: 'BTBZMqHH6r4Tts7J_aSIgg',
  body:
    'DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT' +
    'pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN',
};
const keys = {
  privateKey: Buffer.from(RFC.uaPrivate, 'base64url'),
  publicKey: Buffer.from(RFC.uaPublic, 'base64url'),
  auth: Buffer.from(RFC.auth, 'base64url'),
};

test("decrypts RFC 8291's example", () => {
  assert.equal(decryptAes128gcm(Buffer.from(RFC.body, 'base64url'), keys).toString(), 'When I grow up, I want to be a watermelon');
});

test('a changed byte or another auth secret fails', () => {
  const body = Buffer.from(RFC.body, 'base64url');
  body[body.length - 1] ^= 0x40;
  assert.throws(() => decryptAes128gcm(body, keys));
  assert.throws(() => decryptAes128gcm(Buffer.from(RFC.body, 'base64url'), { ...keys, auth: Buffer.alloc(16) }));
});

function vapid(claims, { alg = 'ES256', signer } = {}) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const k = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]).toString('base64url');
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${part({ typ: 'JWT', alg })}.${part(claims)}`;
  const sig = sign('sha256', Buffer.from(input), { key: signer ?? privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return { header: `vapid t=${input}.${sig}, k=${k}`, k };
}

test('VAPID: a good token verifies; wrong audience, expiry, signer or missing sub do not', () => {
  const now = Date.now();
  const claims = { aud: 'http://127.0.0.1:9', exp: Math.floor(now / 1000) + 12 * 3600, sub: 'mailto:ops@example.com' };
  const good = vapid(claims);
  assert.deepEqual(verifyVapid(good.header, 'http://127.0.0.1:9', now), { key: good.k, claims });
  assert.throws(() => verifyVapid(good.header, 'http://127.0.0.1:10', now), /aud/);
  assert.throws(() => verifyVapid(vapid({ ...claims, exp: Math.floor(now / 1000) - 1 }).header, claims.aud, now), /exp/);
  assert.throws(() => verifyVapid(vapid({ ...claims, exp: Math.floor(now / 1000) + 25 * 3600 }).header, claims.aud, now), /exp/);
  assert.throws(() => verifyVapid(vapid({ aud: claims.aud, exp: claims.exp }).header, claims.aud, now), /sub/);
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  assert.throws(() => verifyVapid(vapid(claims, { signer: other }).header, claims.aud, now), /signature/);
  assert.throws(() => verifyVapid('Bearer abc', claims.aud, now), /not a vapid/);
});
