import { writeSync } from 'node:fs';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
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

/**
 * Appends audit events as JSON lines to a 0600 file. Each line is written (to the kernel, as before: no fsync)
 * synchronously, before the call is answered, so a caller never holds a signature whose audit line is not yet
 * in the file. A write to a regular file is one short syscall; the write stream this replaced cost more per line
 * (a thread-pool job and its completion per line) than the Ed25519 signature it records.
 */
export class AuditLog {
  private closed = false;

  private constructor(
    private readonly file: FileHandle,
    private readonly onError: (e: Error) => void,
  ) {}

  /** `onError` hears write failures after the file is open (disk full...), so they are logged, not fatal. */
  static async open(path: string, onError: (e: Error) => void = () => undefined): Promise<AuditLog> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    return new AuditLog(await open(path, 'a', 0o600), onError);
  }

  write(event: AuditEvent): void {
    if (this.closed) {
      this.onError(new Error('the audit log is closed'));
      return;
    }
    const line = Buffer.from(`${JSON.stringify(event)}\n`, 'utf8');
    try {
      // O_APPEND: each write lands at the end; loop over a short write (a full disk fails with ENOSPC instead).
      for (let at = 0; at < line.length; ) at += writeSync(this.file.fd, line, at);
    } catch (e) {
      this.onError(e as Error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close();
  }
}
