import { randomUUID } from 'node:crypto';
import { hostCheck } from '@cosigner/runtime/hosts';
import { createLogger } from '@cosigner/runtime/logger';
import { isProduction, refuseInProduction } from '@cosigner/runtime/mode';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import type { AccountPrincipal, AccountsFile } from './accounts.ts';
import type { AuditEvent, AuditLog } from './audit.ts';
import { awsError, KmsApiError } from './aws-errors.ts';
import { Input } from './input.ts';
import { OPERATIONS } from './ops.ts';
import { verifySigV4 } from './sigv4.ts';
import type { KeyStore } from './store.ts';

export interface BuildOptions {
  accounts: AccountsFile;
  store: KeyStore;
  audit: AuditLog;
  logger?: Logger;
  /** Clock, for SigV4 skew and key dates. Tests move it. */
  now?: () => number;
  /** Largest accepted request body. KMS requests are small: a 4 KiB message is about 5.5 KiB of JSON. */
  bodyLimit?: number;
  env?: NodeJS.ProcessEnv;
  /** Host names it answers for besides loopback literals and `localhost` (`--allowed-host`, compose: kms-<i>). */
  allowedHosts?: readonly string[];
  /** The address it listens on (a specific IP literal is served too). */
  listenHost?: string;
}

/** The emulator's default body limit (64 KiB). */
export const BODY_LIMIT = 64 * 1024;
const CONTENT_TYPE = 'application/x-amz-json-1.1';

interface Principal {
  accountId: string;
  region: string;
  principal: AccountPrincipal;
}

/**
 * The KMS emulator as a fastify app: `POST /` with `X-Amz-Target: TrentService.<Op>` (AWS JSON 1.1), every
 * request SigV4-verified, authorized by key policy, answered with AWS's shapes and error names, and written
 * to the audit log. `GET /healthz` and `/readyz` are unauthenticated. Refused when NODE_ENV=production.
 */
export async function build(opts: BuildOptions): Promise<FastifyInstance> {
  refuseInProduction(isProduction(undefined, opts.env), 'kms-emulator');
  const now = opts.now ?? Date.now;
  const bodyLimit = opts.bodyLimit ?? BODY_LIMIT;
  const byKey = new Map<string, Principal>();
  for (const a of opts.accounts.accounts) {
    for (const p of a.principals) byKey.set(p.accessKeyId, { accountId: a.accountId, region: a.region, principal: p });
  }
  const accountById = new Map(opts.accounts.accounts.map((a) => [a.accountId, a]));

  const app = Fastify({
    loggerInstance: (opts.logger ?? createLogger({ name: 'kms-emulator', level: 'silent' })) as FastifyBaseLogger,
    bodyLimit,
    // One line per refused call is logged by the route itself; successful calls only at debug level.
    logController: new LogController({ disableRequestLogging: true }),
  });
  // Every body is read as text: SigV4 covers the exact bytes, and AWS JSON 1.1 is parsed per operation.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit }, (_req, body, done) => done(null, body));

  const send = (reply: FastifyReply, status: number, payload: string): FastifyReply =>
    reply.status(status).header('content-type', CONTENT_TYPE).send(payload);

  // Only body reading can fail before the route (the route answers every error itself): a body over the limit
  // or one that cannot be read as text (bad content length, unreadable stream).
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const e =
      err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? awsError('RequestEntityTooLargeException', `The request body is larger than ${bodyLimit} bytes.`)
        : awsError('SerializationException', 'The request body could not be read.');
    send(reply.header('x-amzn-requestid', randomUUID()), e.status, JSON.stringify(e.body()));
  });
  app.setNotFoundHandler((_req, reply) => {
    const e = awsError('UnknownOperationException', 'Send AWS JSON 1.1 requests as POST /.');
    send(reply.status(404), 404, JSON.stringify(e.body()));
  });

  // DNS rebinding guard (runtime/hosts.ts): a web page whose name resolves to this host gets nothing, and no
  // browser origin at all is served (KMS clients are SDKs, which send no Origin).
  const checkHost = hostCheck({ allowedHosts: opts.allowedHosts, listenHost: opts.listenHost, checkOrigin: true });
  app.addHook('onRequest', async (req, reply) => {
    const refused = checkHost(req.headers);
    if (refused) return reply.status(refused.status).send(refused.toJSON());
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async () => ({ ready: true }));

  app.post('/', async (req: FastifyRequest, reply: FastifyReply) => {
    const requestId = randomUUID();
    reply.header('x-amzn-requestid', requestId);
    const target = req.headers['x-amz-target'];
    const op = typeof target === 'string' && target.startsWith('TrentService.') ? target.slice(13) : undefined;
    const event: AuditEvent = {
      eventTime: new Date(now()).toISOString(),
      eventSource: 'kms.amazonaws.com',
      eventName: op ?? String(target ?? ''),
      requestId,
      sourceIPAddress: req.ip,
    };
    let status: number;
    let payload: string;
    try {
      const body = typeof req.body === 'string' ? req.body : '';
      // KMS clients send `POST /` with no query: parse a URL only when there is one.
      const url = req.url.includes('?') ? new URL(req.url, 'http://localhost') : undefined;
      const verified = await verifySigV4(
        {
          method: req.method,
          path: url?.pathname ?? req.url,
          query: url ? Object.fromEntries(url.searchParams) : {},
          headers: req.headers,
          body,
        },
        (akid) => byKey.get(akid)?.principal,
        now(),
      );
      const who = byKey.get(verified.accessKeyId)!;
      Object.assign(event, {
        awsRegion: verified.region,
        accountId: who.accountId,
        principalArn: who.principal.arn,
        accessKeyId: who.principal.accessKeyId,
      });
      const operation = op === undefined || !Object.hasOwn(OPERATIONS, op) ? undefined : OPERATIONS[op];
      if (operation === undefined)
        throw awsError('UnknownOperationException', `Unknown operation ${String(target ?? '')}.`);
      let parsed: unknown = {};
      if (body.trim() !== '') {
        try {
          parsed = JSON.parse(body);
        } catch {
          throw awsError('SerializationException', 'Start of structure or map found where not expected.');
        }
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw awsError('SerializationException', 'Start of structure or map found where not expected.');
      }
      const audit: { keyArn?: string; signingAlgorithm?: string; encryptionAlgorithm?: string } = {};
      try {
        const out = await operation(
          {
            caller: {
              accountId: who.accountId,
              arn: who.principal.arn,
              role: who.principal.role,
              accessKeyId: who.principal.accessKeyId,
            },
            account: accountById.get(who.accountId)!,
            region: verified.region,
            store: opts.store,
            now: now(),
            audit,
          },
          new Input(parsed as Record<string, unknown>),
        );
        req.log.debug({ op, requestId }, 'kms call');
        status = 200;
        payload = out === undefined ? '' : JSON.stringify(out);
      } finally {
        Object.assign(event, audit);
      }
    } catch (err) {
      const e =
        err instanceof KmsApiError ? err : awsError('KMSInternalException', 'The request could not be processed.');
      if (e.status >= 500) req.log.error({ err, op, requestId }, 'kms-emulator internal error');
      else req.log.info({ op, requestId, errorCode: e.type }, 'kms call refused');
      event.errorCode = e.type;
      status = e.status;
      payload = JSON.stringify(e.body());
    }
    // The audit line is written before the answer leaves, as for every call (audit.ts).
    opts.audit.write(event);
    return send(reply, status, payload);
  });

  app.addHook('onClose', async () => {
    await opts.audit.close();
  });
  return app;
}
