/**
 * One KMS call over a keep-alive socket with a hand-made SigV4 Authorization header (AWS SigV4 spec, "Create a
 * signed AWS API request"), body and headers exactly as @aws-sdk/client-kms sends them. The benches use it as
 * the floor an SDK call is compared with; it is never used by the services.
 */
import { createHash, createHmac } from 'node:crypto';
import { type Agent, request } from 'node:http';

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

export function rawKmsCall(params: {
  url: URL;
  agent: Agent;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  target: string;
  body: string;
}): Promise<{ status: number; body: string }> {
  const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const host = params.url.host;
  const payloadHash = sha256(params.body);
  const headers: Record<string, string> = {
    'content-type': 'application/x-amz-json-1.1',
    host,
    'x-amz-content-sha256': payloadHash,
    'x-amz-date': amzDate,
    'x-amz-target': `TrentService.${params.target}`,
  };
  const names = Object.keys(headers).sort();
  const canonical = ['POST', '/', '', ...names.map((h) => `${h}:${headers[h]}`), '', names.join(';'), payloadHash].join(
    '\n',
  );
  const scope = `${day}/${params.region}/kms/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const kSigning = hmac(
    hmac(hmac(hmac(`AWS4${params.credentials.secretAccessKey}`, day), params.region), 'kms'),
    'aws4_request',
  );
  const signature = createHmac('sha256', kSigning).update(toSign).digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${params.credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: params.url.hostname, port: params.url.port, path: '/', method: 'POST', headers, agent: params.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(params.body);
  });
}
