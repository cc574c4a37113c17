import pino, { type Logger, type LoggerOptions } from 'pino';

/**
 * Paths redacted from every log line. Secrets, credentials, seeds and full signed envelopes never reach
 * a log at any level; services add their own paths through `extraRedact`.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["x-amz-security-token"]',
  'headers.authorization',
  '*.secretAccessKey',
  '*.sessionToken',
  '*.secret',
  '*.seed',
  '*.pin',
  '*.password',
  '*.apiKey',
  '*.privateKey',
  '*.signedXdr',
  '*.envelopeXdr',
  // pino's `*.key` matches one level below the log object only, so the same names at the top level
  // (`log.info({ seed })`) need their own paths (pino redaction docs, "paths"). Deeper nesting is not covered:
  // never log whole config or credential objects.
  'secretAccessKey',
  'sessionToken',
  'secret',
  'seed',
  'pin',
  'password',
  'apiKey',
  'privateKey',
  'signedXdr',
  'envelopeXdr',
];

export interface LoggerParams {
  name: string;
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream to read what was logged. */
  destination?: pino.DestinationStream;
  extraRedact?: string[];
}

export function createLogger(params: LoggerParams): Logger {
  const opts: LoggerOptions = {
    name: params.name,
    level: params.level ?? 'info',
    redact: { paths: [...REDACT_PATHS, ...(params.extraRedact ?? [])], censor: '[redacted]' },
  };
  return params.destination ? pino(opts, params.destination) : pino(opts);
}

export type { Logger };
