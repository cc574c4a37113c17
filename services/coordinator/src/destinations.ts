import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { BlockList, isIP } from 'node:net';

/**
 * Where the coordinator may POST callbacks (server-side request forgery guard).
 *
 * A client chooses `callbackUrl`; without a check the coordinator would POST to anything it can reach: its own
 * loopback services, the cluster's private network, the cloud metadata service (169.254.169.254, fd00:ec2::254).
 * The operator lists allowed destinations in `callbacks.allowedDestinations`: host names (`hooks.example.com`,
 * or `*.example.com` for its subdomains), IP literals and CIDRs (`10.20.0.0/16`, `fd00:1::/64`).
 *
 * - With a list, only its destinations: a host whose name is listed, or whose address is in a listed CIDR.
 * - Without one, any address in development; in production every address but the special ranges below
 *   (loopback, private, shared, link-local and metadata, unique-local, multicast, unspecified, reserved).
 *
 * The address is checked where it is used: in the socket's own DNS lookup at connect time (`connectLookup`), so
 * a name that resolved to a public address when the proposal arrived and to 127.0.0.1 when the callback goes
 * out (DNS rebinding) is refused. Redirects are never followed (the receiver answers; a 3xx is a failure).
 */

/** IANA special-purpose ranges (RFC 6890 and its registries) a callback may not reach in production. */
const SPECIAL = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network" (RFC 791); 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0', 8], // private (RFC 1918)
  ['100.64.0.0', 10], // shared address space, carrier NAT (RFC 6598); also some clouds' metadata (100.100.100.200)
  ['127.0.0.0', 8], // loopback (RFC 1122)
  ['169.254.0.0', 16], // link-local (RFC 3927), cloud metadata 169.254.169.254
  ['172.16.0.0', 12], // private (RFC 1918)
  ['192.0.0.0', 24], // IETF protocol assignments (RFC 6890)
  ['192.168.0.0', 16], // private (RFC 1918)
  ['198.18.0.0', 15], // benchmarking (RFC 2544)
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the limited broadcast 255.255.255.255
] as const) {
  SPECIAL.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b::', 96], // NAT64 (RFC 6052): reaches IPv4 addresses, private ones included
  ['fc00::', 7], // unique local (RFC 4193); AWS metadata fd00:ec2::254
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  SPECIAL.addSubnet(net, bits, 'ipv6');
}

const family = (address: string): 'ipv4' | 'ipv6' => (isIP(address) === 6 ? 'ipv6' : 'ipv4');
const unbracket = (h: string): string => (h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h);

/** True for loopback, private, link-local, metadata and the other special-purpose addresses (IPv4-mapped too). */
export function isSpecialAddress(address: string): boolean {
  const a = unbracket(address);
  // BlockList checks an IPv4-mapped IPv6 address (::ffff:10.0.0.1) against the IPv4 rules as well.
  return isIP(a) !== 0 && SPECIAL.check(a, family(a));
}

const NAME_RE = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Why an allow-list entry is not a host name, `*.` name, IP literal or CIDR; undefined when it is one. */
export function destinationEntryProblem(entry: string): string | undefined {
  const e = unbracket(entry.trim().toLowerCase());
  const slash = e.indexOf('/');
  if (slash >= 0) {
    const ip = e.slice(0, slash);
    const bits = e.slice(slash + 1);
    const max = isIP(ip) === 4 ? 32 : isIP(ip) === 6 ? 128 : 0;
    if (max === 0 || !/^\d{1,3}$/.test(bits) || Number(bits) > max) return 'not a valid CIDR';
    return undefined;
  }
  if (isIP(e) !== 0) return undefined;
  return NAME_RE.test(e) && e.length <= 253 ? undefined : 'not a host name, *.name, IP address or CIDR';
}

export interface DestinationPolicyOptions {
  /** `callbacks.allowedDestinations` (checked by destinationEntryProblem at config load). */
  allowed: readonly string[];
  production: boolean;
}

export class DestinationPolicy {
  readonly #names = new Set<string>();
  readonly #suffixes: string[] = [];
  readonly #blocks = new BlockList();
  readonly #hasAddresses: boolean;
  readonly #restricted: boolean;
  readonly #production: boolean;

  constructor(opts: DestinationPolicyOptions) {
    let addresses = 0;
    for (const raw of opts.allowed) {
      const e = unbracket(raw.trim().toLowerCase());
      const slash = e.indexOf('/');
      if (slash >= 0) {
        const ip = e.slice(0, slash);
        this.#blocks.addSubnet(ip, Number(e.slice(slash + 1)), family(ip));
        addresses++;
      } else if (isIP(e) !== 0) {
        this.#blocks.addAddress(e, family(e));
        addresses++;
      } else if (e.startsWith('*.')) this.#suffixes.push(e.slice(1));
      else this.#names.add(e.endsWith('.') ? e.slice(0, -1) : e);
    }
    this.#hasAddresses = addresses > 0;
    this.#restricted = opts.allowed.length > 0;
    this.#production = opts.production;
  }

  #nameListed(host: string): boolean {
    const h = host.toLowerCase().replace(/\.$/, '');
    return this.#names.has(h) || this.#suffixes.some((s) => h.endsWith(s) && h.length > s.length);
  }

  /**
   * May a callback to `host` go to `address` (one address `host` resolved to, or `host` itself when it is an IP
   * literal)? Undefined when it may, else the reason.
   */
  refusal(host: string, address: string): string | undefined {
    const h = unbracket(host);
    const a = unbracket(address);
    if (isIP(h) === 0 && this.#nameListed(h)) return undefined;
    if (this.#hasAddresses && isIP(a) !== 0 && this.#blocks.check(a, family(a))) return undefined;
    if (this.#restricted) return `${h} (${a}) is not in callbacks.allowedDestinations`;
    if (this.#production && isSpecialAddress(a)) {
      return `${h} resolves to ${a}, a loopback, private, link-local or metadata address (refused in production unless listed in callbacks.allowedDestinations)`;
    }
    return undefined;
  }

  /**
   * The check that can be made on the URL alone, when a proposal arrives: an IP literal is judged in full; a
   * name is refused when the list allows names only and does not name it. Anything else is decided on the
   * resolved address at connect time.
   */
  refusalForUrl(url: URL): string | undefined {
    const host = unbracket(url.hostname);
    if (isIP(host) !== 0) return this.refusal(host, host);
    if (this.#restricted && !this.#hasAddresses && !this.#nameListed(host)) {
      return `${host} is not in callbacks.allowedDestinations`;
    }
    return undefined;
  }

  /**
   * A `lookup` for the callback's socket (net.connect calls it after the URL's name is known, just before it
   * connects): resolves with the system resolver (or `resolve`), then refuses the connection when any address
   * the name resolved to is refused, so the address connected to is the address checked.
   */
  connectLookup(resolve: typeof dnsLookup = dnsLookup): LookupFunction {
    return (hostname, options, callback) => {
      resolve(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err, '', 0);
        const list = addresses as LookupAddress[];
        for (const { address } of list) {
          const why = this.refusal(hostname, address);
          if (why !== undefined) {
            const e = Object.assign(new Error(`callback destination refused: ${why}`), {
              code: 'CALLBACK_DESTINATION_REFUSED',
            });
            return callback(e, '', 0);
          }
        }
        if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
        const first = list[0];
        if (!first)
          return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
        callback(null, first.address, first.family);
      });
    };
  }
}
