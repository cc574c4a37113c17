import { BlockList, isIP } from 'node:net';
import type { CosignerError } from '@cosigner/errors/errors';
import { runtimeErrors } from './errors.ts';

/**
 * Which host names and addresses a listener answers for, and what counts as "this host only".
 *
 * DNS rebinding: a web page on `rebind.attacker.example` makes a victim's browser resolve that name to
 * 127.0.0.1 and send requests to a service on loopback. The browser still sends `Host: rebind.attacker.example`
 * (RFC 9110 section 7.2: Host carries the authority of the target URI) and, for a cross-site fetch or form
 * post, `Origin: http://rebind.attacker.example` (RFC 6454 section 7). So every listener answers only a Host it
 * is configured to serve (loopback literals and `localhost` by default, plus configured names such as a compose
 * service name) and the admin listeners also refuse a foreign Origin. An attacker's name is never a loopback
 * address: names other than `localhost` are resolved by DNS, which the attacker controls.
 */

const V4_LOOPBACK = new BlockList();
V4_LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');

/** Strip the brackets of an IPv6 literal (`[::1]` as in a URL or a Host header). */
function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * True only for an IP literal in 127.0.0.0/8, `::1`, or an IPv4-mapped loopback (`::ffff:127.0.0.1`,
 * RFC 4291 section 2.5.5.2). Names are not addresses: `127.evil.example` is a DNS name like any other.
 */
export function isLoopbackAddress(host: string): boolean {
  const h = unbracket(host).toLowerCase();
  const family = isIP(h);
  if (family === 4) return V4_LOOPBACK.check(h, 'ipv4');
  if (family === 6) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    // BlockList checks an IPv4-mapped IPv6 address against the IPv4 rules (node:net, BlockList.check).
    return V4_LOOPBACK.check(h, 'ipv6');
  }
  return false;
}

/** True for a loopback IP literal or the name `localhost` (RFC 6761 section 6.3: it resolves to loopback). */
export function isLoopbackHost(host: string): boolean {
  return host.toLowerCase() === 'localhost' || isLoopbackAddress(host);
}

/** The host name of a Host header value (`name`, `name:port`, `[v6]:port`), lower case; undefined if malformed. */
export function hostOfHeader(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || !/^[A-Za-z0-9.\-_:[\]]+$/.test(value)) return undefined;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m) return undefined;
  const host = unbracket(m[1]!).toLowerCase();
  if (m[1]!.startsWith('[') && isIP(host) !== 6) return undefined;
  return host;
}

export interface HostPolicyOptions {
  /**
   * Extra host names or IP literals this listener serves (compose service names, a DNS name in front of it).
   * Loopback literals and `localhost` are always served.
   */
  allowedHosts?: readonly string[];
  /** The address the listener is bound to: a specific (not wildcard) IP literal is served too. */
  listenHost?: string;
  /** Refuse a request whose `Origin` names a host outside the list (the admin APIs: no browser has business there). */
  checkOrigin?: boolean;
}

function normalize(host: string): string {
  const h = unbracket(host.trim()).toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

function sameAddress(a: string, b: string): boolean {
  if (isIP(a) === 0 || isIP(b) === 0) return false;
  const list = new BlockList();
  list.addAddress(a, isIP(a) === 4 ? 'ipv4' : 'ipv6');
  return list.check(b, isIP(b) === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Check a request's Host (and Origin) headers. Returns undefined when the request may proceed, else the error
 * to answer with (RUNTIME_HOST_NOT_ALLOWED or RUNTIME_ORIGIN_NOT_ALLOWED, both 403).
 */
export type HostCheck = (headers: {
  host?: string | string[];
  origin?: string | string[];
}) => CosignerError | undefined;

/** Build a listener's Host (and Origin) check from its configuration. */
export function hostCheck(opts: HostPolicyOptions = {}): HostCheck {
  const names = new Set<string>();
  const addresses: string[] = [];
  for (const entry of opts.allowedHosts ?? []) {
    const h = normalize(entry);
    if (h === '') continue;
    if (isIP(h) !== 0) addresses.push(h);
    else names.add(h);
  }
  const listen = opts.listenHost === undefined ? '' : normalize(opts.listenHost);
  if (isIP(listen) !== 0 && listen !== '0.0.0.0' && listen !== '::') addresses.push(listen);
  const served = (host: string): boolean => {
    const h = normalize(host);
    if (isLoopbackHost(h)) return true;
    if (isIP(h) !== 0) return addresses.some((a) => sameAddress(a, h));
    return names.has(h);
  };
  return (headers) => {
    const raw = Array.isArray(headers.host) ? undefined : headers.host;
    const host = hostOfHeader(raw);
    if (host === undefined || !served(host)) {
      return runtimeErrors.error(
        'RUNTIME_HOST_NOT_ALLOWED',
        { host: (raw ?? '').slice(0, 256) },
        {
          message: `This service does not answer for Host "${(raw ?? '').slice(0, 256)}"; add the name to its allowed hosts if it should.`,
        },
      );
    }
    if (opts.checkOrigin && headers.origin !== undefined) {
      const origin = Array.isArray(headers.origin) ? headers.origin.join(',') : headers.origin;
      let originHost: string | undefined;
      try {
        originHost = new URL(origin).hostname;
      } catch {
        originHost = undefined;
      }
      if (!originHost || !served(originHost)) {
        return runtimeErrors.error(
          'RUNTIME_ORIGIN_NOT_ALLOWED',
          { origin: origin.slice(0, 256) },
          { message: `Requests from the web origin "${origin.slice(0, 256)}" are refused.` },
        );
      }
    }
    return undefined;
  };
}
