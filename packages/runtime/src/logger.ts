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
