import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { b64, type Harness, harness, sign } from './helpers.ts';

describe('kms-emulator SigV4 authentication and the HTTP front end', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness({ bodyLimit: 8192 });
  });
  afterEach(() => h.close());

  it('answers an unknown access key with UnrecognizedClientException', async () => {
    const r = await h.call(h.admin(), 'ListKeys', {}, { accessKeyId: 'AKIAUNKNOWNUNKNOWN12' });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({
      __type: 'UnrecognizedClientException',
      message: 'The security token included in the request is invalid.',
    });
    const token = await h.call(h.admin(), 'ListKeys', {}, { extraHeaders: { 'x-amz-security-token': 'session' } });
    expect(token.body.__type).toBe('UnrecognizedClientException');
  });

  it('answers a wrong secret or a tampered body with InvalidSignatureException', async () => {
    const r = await h.call(h.admin(), 'ListKeys', {}, { secret: 'wrong-secret-wrong-secret' });
    expect(r.status).toBe(400);
    expect(r.body.__type).toBe('InvalidSignatureException');
    expect(r.body.message).toMatch(/^The request signature we calculated does not match the signature you provided/);
    const tampered = await h.call(h.admin(), 'CreateKey', {}, { sendBody: '{"Description":"evil"}' });
    expect(tampered.body.__type).toBe('InvalidSignatureException');
    const hashHeader = await h.call(
      h.admin(),
      'CreateKey',
      {},
      { extraHeaders: { 'x-amz-content-sha256': '0'.repeat(64) } },
    );
    expect(hashHeader.body.__type).toBe('InvalidSignatureException');
    expect(hashHeader.body.message).toMatch(/x-amz-content-sha256/);
    // A correct x-amz-content-sha256, signed, is accepted.
    const good = await h.call(
      h.admin(),
      'ListKeys',
      {},
      {
        extraHeaders: { 'x-amz-content-sha256': '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a' },
      },
    );
    expect(good.status).toBe(200);
    const retarget = await h.call(h.admin(), 'ListKeys', {}, { drop: ['x-amz-target'] });
    expect(retarget.body.__type).toBe('InvalidSignatureException');
    expect(retarget.body.message).toBe('Signed header x-amz-target is missing.');
  });

  it('answers clock skew beyond 5 minutes as AWS does: "Signature expired" / "Signature not yet current"', async () => {
    const old = await h.call(h.admin(), 'ListKeys', {}, { at: h.clock.now - 5 * 60_000 - 1000 });
    expect(old.body).toEqual({
      __type: 'InvalidSignatureException',
      message: 'Signature expired: 20261128T115459Z is now earlier than 20261128T115500Z (20261128T120000Z - 5 min.)',
    });
    const future = await h.call(h.admin(), 'ListKeys', {}, { at: h.clock.now + 6 * 60_000 });
    expect(future.body.__type).toBe('InvalidSignatureException');
    expect(future.body.message).toMatch(
      /^Signature not yet current: 20261128T120600Z is still later than 20261128T120500Z/,
    );
    expect((await h.call(h.admin(), 'ListKeys', {}, { at: h.clock.now - 4 * 60_000 })).status).toBe(200);
  });

  it('answers missing, malformed and mis-scoped Authorization headers', async () => {
    const none = await h.app.inject({
      method: 'POST',
      url: '/',
      headers: { 'x-amz-target': 'TrentService.ListKeys' },
      payload: '{}',
    });
    expect(JSON.parse(none.body)).toEqual({
      __type: 'MissingAuthenticationTokenException',
      message: 'Missing Authentication Token',
    });
    const base = {
      host: 'localhost',
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'TrentService.ListKeys',
    };
    const signed = await sign(h.admin(), '{}', base, 'us-east-1', h.clock.now);
    const send = async (headers: Record<string, string>) =>
      JSON.parse((await h.app.inject({ method: 'POST', url: '/', headers, payload: '{}' })).body) as Record<
        string,
        string
      >;
    const auth = signed.authorization!;
    expect((await send({ ...signed, authorization: 'Basic abc' })).__type).toBe('IncompleteSignatureException');
    expect((await send({ ...signed, authorization: auth.replace(/Credential=[^/]+\//, 'Credential=') })).__type).toBe(
      'IncompleteSignatureException',
    );
    expect((await send({ ...signed, authorization: auth.replace('/kms/', '/s3/') })).__type).toBe(
      'InvalidSignatureException',
    );
    const dated = await send({ ...signed, authorization: auth.replace(/\/\d{8}\//, '/20200101/') });
    expect(dated.message).toMatch(/Date in Credential scope does not match/);
    expect((await send({ ...signed, 'x-amz-date': '2026-11-28' })).__type).toBe('IncompleteSignatureException');
    expect((await send({ ...signed, authorization: auth.replace('host;', '') })).__type).toBe(
      'IncompleteSignatureException',
    );
  });

  it('verifies what the SDK signer canonicalises: a query string, extra signed headers, odd spacing', async () => {
    // The canonical request must be the SDK's byte for byte: a query (sorted, RFC 3986 escaped), a signed
    // header with runs of spaces (trimmed and collapsed), an unsigned header (ignored).
    const headers = {
      host: 'localhost',
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'TrentService.ListKeys',
      'x-extra': '  two   spaces  ',
    };
    const signer = new SignatureV4({
      credentials: { accessKeyId: h.admin().accessKeyId, secretAccessKey: h.admin().secretAccessKey },
      region: 'us-east-1',
      service: 'kms',
      sha256: Hash.bind(null, 'sha256'),
    });
    const query = { b: 'x y', a: "it's*", 'c~': '' };
    const signed = await signer.sign(
      new HttpRequest({
        method: 'POST',
        protocol: 'http:',
        hostname: 'localhost',
        path: '/',
        query,
        headers,
        body: '{}',
      }),
      { signingDate: new Date(h.clock.now) },
    );
    const url = '/?b=x%20y&a=it%27s%2A&c~=';
    const ok = await h.app.inject({
      method: 'POST',
      url,
      headers: { ...(signed.headers as Record<string, string>), 'user-agent': 'unsigned' },
      payload: '{}',
    });
    expect(ok.statusCode).toBe(200);
    // The same signature over another query or another value of a signed header is refused.
    const otherQuery = await h.app.inject({
      method: 'POST',
      url: '/?b=x%20z&a=it%27s%2A&c~=',
      headers: signed.headers as Record<string, string>,
      payload: '{}',
    });
    expect(JSON.parse(otherQuery.body).__type).toBe('InvalidSignatureException');
    const otherHeader = await h.app.inject({
      method: 'POST',
      url,
      headers: { ...(signed.headers as Record<string, string>), 'x-extra': 'one space' },
      payload: '{}',
    });
    expect(JSON.parse(otherHeader.body).__type).toBe('InvalidSignatureException');
  });

  it('derives the signing key per day and region, and keeps refusing a wrong secret once one is cached', async () => {
    // Many regions (more than the per-principal cache holds), then the first again, then the next day.
    const regions = ['us-east-1', ...Array.from({ length: 12 }, (_, i) => `eu-test-${i}`), 'us-east-1'];
    for (const region of regions) {
      expect((await h.call(h.admin(), 'ListKeys', {}, { region })).status).toBe(200);
      const bad = await h.call(h.admin(), 'ListKeys', {}, { region, secret: 'wrong-secret-wrong-secret' });
      expect(bad.body.__type).toBe('InvalidSignatureException');
    }
    h.clock.now += 86_400_000;
    expect((await h.call(h.admin(), 'ListKeys', {})).status).toBe(200);
    // Another principal with a cached key of its own does not verify with the first one's.
    const stolen = await h.call(h.node(), 'ListKeys', {}, { secret: h.admin().secretAccessKey });
    expect(stolen.body.__type).toBe('InvalidSignatureException');
  });

  it('refuses a credential scope whose date is only a prefix of the request date', async () => {
    const base = {
      host: 'localhost',
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'TrentService.ListKeys',
    };
    const signed = await sign(h.admin(), '{}', base, 'us-east-1', h.clock.now);
    const auth = signed.authorization!.replace(/\/\d{8}\//, '/2026/');
    const r = await h.app.inject({
      method: 'POST',
      url: '/',
      headers: { ...signed, authorization: auth },
      payload: '{}',
    });
    expect(JSON.parse(r.body).message).toMatch(/Date in Credential scope does not match/);
  });

  it('answers unknown operations, other paths and oversized bodies', async () => {
    const unknown = await h.call(h.admin(), 'Frobnicate', {});
    expect(unknown.body).toEqual({
      __type: 'UnknownOperationException',
      message: 'Unknown operation TrentService.Frobnicate.',
    });
    expect((await h.call(h.admin(), 'x', {}, { target: 'Other.ListKeys' })).body.__type).toBe(
      'UnknownOperationException',
    );
    expect((await h.call(h.admin(), 'x', {}, { target: null })).body.__type).toBe('UnknownOperationException');
    expect((await h.call(h.admin(), 'toString', {})).body.__type).toBe('UnknownOperationException');
    const big = await h.app.inject({
      method: 'POST',
      url: '/',
      headers: { 'content-type': 'application/x-amz-json-1.1' },
      payload: JSON.stringify({ Message: b64(Buffer.alloc(8192)) }),
    });
    expect(big.statusCode).toBe(413);
    expect(JSON.parse(big.body).__type).toBe('RequestEntityTooLargeException');
    const notFound = await h.app.inject({ method: 'GET', url: '/nope' });
    expect(notFound.statusCode).toBe(404);
    expect(JSON.parse(notFound.body).__type).toBe('UnknownOperationException');
    expect((await h.app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ ok: true });
    expect((await h.app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({ ready: true });
  });

  it('answers a body that cannot be read (content length mismatch) as SerializationException', async () => {
    const r = await h.app.inject({
      method: 'POST',
      url: '/',
      headers: { 'content-type': 'application/x-amz-json-1.1', 'content-length': '100' },
      payload: '{}',
    });
    expect(r.statusCode).toBe(400);
    expect(JSON.parse(r.body).__type).toBe('SerializationException');
  });
});
