import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * One line of the audit trail, shaped after a CloudTrail KMS event (eventTime, eventName, userIdentity's
 * account/ARN/access key, the key ARN, the algorithm, errorCode). It never carries the message, a plaintext,
 * a signature or any key material: only the fields below exist.
 */
export interface AuditEvent {
  eventTime: string;
  eventSource: 'kms.amazonaws.com';
  eventName: string;
  requestId: string;
  awsRegion?: string;
  sourceIPAddress: string;
  /** The caller's account (CloudTrail userIdentity.accountId). */
  accountId?: string;
  principalArn?: string;
  accessKeyId?: string;
  keyArn?: string;
  signingAlgorithm?: string;
  encryptionAlgorithm?: string;
  /** The AWS error name (`__type`) when the call failed; absent on success. */
  errorCode?: string;
}

/** Appends audit events as JSON lines to a 0600 file; `close` flushes. */
export class AuditLog {
  private constructor(private readonly stream: WriteStream) {}

  /** `onError` hears write failures after the file is open (disk full...), so they are logged, not fatal. */
  static async open(path: string, onError: (e: Error) => void = () => undefined): Promise<AuditLog> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', reject);
    });
    stream.on('error', onError);
    return new AuditLog(stream);
  }

  write(event: AuditEvent): void {
    this.stream.write(`${JSON.stringify(event)}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.stream.end(resolve));
  }
}
