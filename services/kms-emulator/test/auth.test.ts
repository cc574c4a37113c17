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
