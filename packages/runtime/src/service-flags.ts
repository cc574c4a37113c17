import { type Command, InvalidArgumentError } from 'commander';

/**
 * The flags every long-running service command shares (`cosigner coordinator|node|kms-emulator|ledger-sim`),
 * declared once so they read and check the same everywhere: `--port` (0 picks a free port), `--host`,
 * `--allowed-host` (repeatable), `--ready-file` (written as `{url, pid, ...}` once the service serves; the
 * launcher and the tests wait for it), `--data-dir` and `--config`. Each service says what the flag means for it
 * (its help text and default); a service without a flag leaves it out of the spec.
 */

/** The common flags as commander hands them to an action. */
export interface ServiceFlags {
  port?: number;
  host?: string;
  allowedHost?: string[];
  readyFile?: string;
  dataDir?: string;
  config?: string;
}

/**
 * The common flags of a service whose port, host and data directory have defaults (the KMS emulator, the ledger
 * simulator), so commander always hands them over.
 */
export interface DefaultedServiceFlags extends ServiceFlags {
  port: number;
  host: string;
  dataDir: string;
}

/** A flag's help text and, where the service has one, its default. */
export interface FlagSpec<T> {
  readonly help: string;
  readonly default?: T;
}

/** Which of the common flags a service takes, in the order they are listed in its --help. */
export interface ServiceFlagSpec {
  readonly config?: FlagSpec<never>;
  readonly port: FlagSpec<number>;
  readonly host: FlagSpec<string>;
  readonly allowedHost?: FlagSpec<never>;
  /** What the ready file holds, e.g. `{url, pid, accountsFile, dataDir}`. */
  readonly readyFile: FlagSpec<never>;
  readonly dataDir: FlagSpec<string>;
}

/**
 * A parser for an integer flag from `min` to `max`, for commander: digits only, so `1.5`, `-1`, `0x10` and `1e3`
 * are refused with a message that names the flag and its range.
 */
export function intOption(name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${name} must be ${min} to ${max}.`);
    return n;
  };
}

/** Collects a repeatable flag's values in the order given. */
export function repeatable(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** Add the common flags the spec names to `cmd`, with each service's help texts and defaults. */
export function serviceFlags(cmd: Command, spec: ServiceFlagSpec): Command {
  if (spec.config) cmd.option('--config <file>', spec.config.help);
  cmd.option('--port <port>', spec.port.help, intOption('--port', 0, 65535), spec.port.default);
  cmd.option('--host <host>', spec.host.help, spec.host.default);
  if (spec.allowedHost) cmd.option('--allowed-host <name>', spec.allowedHost.help, repeatable);
  cmd.option('--ready-file <file>', spec.readyFile.help);
  cmd.option('--data-dir <dir>', spec.dataDir.help, spec.dataDir.default);
  return cmd;
}
