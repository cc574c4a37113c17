import { awsError } from './aws-errors.ts';

/**
 * Reads one operation's JSON input the way the AWS JSON 1.1 front end does: a value of the wrong JSON type is
 * a SerializationException at once; constraint violations (missing, length, range, enum) are collected and
 * answered together as one ValidationException, "N validation error(s) detected: Value ... at 'member'
 * failed to satisfy constraint: ...", members named in lowerCamelCase. Blob values are never echoed.
 */
export class Input {
  private readonly violations: string[] = [];

  constructor(private readonly body: Record<string, unknown>) {}

  private wrongType(name: string, expected: string): never {
    throw awsError('SerializationException', `Expected ${expected} for ${name}.`);
  }

  private violate(value: string, name: string, constraint: string): void {
    const at = name.charAt(0).toLowerCase() + name.slice(1);
    this.violations.push(`Value ${value} at '${at}' failed to satisfy constraint: ${constraint}`);
  }

  private present(name: string, required: boolean): boolean {
    const v = this.body[name];
    if (v === undefined || v === null) {
      if (required) this.violate('null', name, 'Member must not be null');
      return false;
    }
    return true;
  }

  private length(shown: string, name: string, len: number, min: number, max: number): boolean {
    if (len < min) this.violate(shown, name, `Member must have length greater than or equal to ${min}`);
    else if (len > max) this.violate(shown, name, `Member must have length less than or equal to ${max}`);
    else return true;
    return false;
  }

  string(name: string, o: { required?: boolean; min?: number; max?: number; values?: readonly string[] } = {}) {
    if (!this.present(name, o.required ?? false)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'string') this.wrongType(name, 'String');
    if (!this.length(`'${v}'`, name, v.length, o.min ?? 0, o.max ?? 2048)) return undefined;
    if (o.values && !o.values.includes(v)) {
      this.violate(`'${v}'`, name, `Member must satisfy enum value set: [${o.values.join(', ')}]`);
      return undefined;
    }
    return v;
  }

  /** A base64 blob. Length limits are on the decoded bytes, as in the KMS API reference. */
  blob(name: string, o: { required?: boolean; min: number; max: number }): Buffer | undefined {
    if (!this.present(name, o.required ?? false)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'string') this.wrongType(name, 'Blob');
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(v)) {
      throw awsError('SerializationException', `Base64 encoded value of ${name} is not valid.`);
    }
    const bytes = Buffer.from(v, 'base64');
    return this.length('', name, bytes.length, o.min, o.max) ? bytes : undefined;
  }

  int(name: string, o: { min: number; max: number }): number | undefined {
    if (!this.present(name, false)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'number' || !Number.isInteger(v)) this.wrongType(name, 'Integer');
    if (v < o.min) this.violate(`'${v}'`, name, `Member must have value greater than or equal to ${o.min}`);
    else if (v > o.max) this.violate(`'${v}'`, name, `Member must have value less than or equal to ${o.max}`);
    else return v;
    return undefined;
  }

  bool(name: string): boolean | undefined {
    if (!this.present(name, false)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'boolean') this.wrongType(name, 'Boolean');
    return v;
  }

  /** EncryptionContext: a map of strings to strings. */
  stringMap(name: string): Record<string, string> | undefined {
    if (!this.present(name, false)) return undefined;
    const v = this.body[name];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.wrongType(name, 'Map');
    for (const x of Object.values(v)) if (typeof x !== 'string') this.wrongType(name, 'Map of String');
    return v as Record<string, string>;
  }

  /** Tags: a list of `{TagKey (1-128), TagValue (0-256)}`. */
  tags(name: string, required: boolean): { TagKey: string; TagValue: string }[] | undefined {
    if (!this.present(name, required)) return undefined;
    const v = this.body[name];
    if (!Array.isArray(v)) this.wrongType(name, 'List');
    return v.map((t: unknown) => {
      if (typeof t !== 'object' || t === null || Array.isArray(t)) this.wrongType(name, 'Tag structure');
      const tag = new Input(t as Record<string, unknown>);
      const TagKey = tag.string('TagKey', { required: true, min: 1, max: 128 });
      const TagValue = tag.string('TagValue', { required: true, min: 0, max: 256 });
      this.violations.push(...tag.violations);
      return { TagKey: TagKey ?? '', TagValue: TagValue ?? '' };
    });
  }

  /** Throw the collected violations, if any, as one ValidationException. */
  done(): void {
    const n = this.violations.length;
    if (n === 0) return;
    throw awsError(
      'ValidationException',
      `${n} validation error${n === 1 ? '' : 's'} detected: ${this.violations.join('; ')}`,
    );
  }
}
