import { InvalidArgumentError } from 'commander';
import { CLUSTER_ID_PATTERN, parseDuration } from '@spillway/common';

/**
 * Parsers for command-line values. They throw commander's InvalidArgumentError, which
 * commander turns into one line naming the flag and the value; exit code 2.
 */

export function clusterId(value: string): string {
  if (!CLUSTER_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError(
      'a cluster name is a DNS label: lowercase letters, digits and "-", 1-40 characters, starting and ending with a letter or digit.',
    );
  }
  return value;
}

export function nonNegativeInt(value: string): number {
  if (!/^\d{1,9}$/.test(value.trim())) {
    throw new InvalidArgumentError('expected a whole number (0 or more).');
  }
  return Number(value.trim());
}

export function positiveInt(value: string): number {
  const n = nonNegativeInt(value);
  if (n === 0) throw new InvalidArgumentError('expected a whole number of 1 or more.');
  return n;
}

/** Durations like 30s, 2m, 1m30s; returns milliseconds. */
export function duration(value: string): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch {
    throw new InvalidArgumentError('expected a duration such as 30s, 2m or 1m30s.');
  }
  if (ms <= 0) throw new InvalidArgumentError('expected a duration above zero.');
  return ms;
}

/** Repeatable flags (--gpu-product A --gpu-product B) collect into a list. */
export function collect(value: string, previous: string[] | undefined): string[] {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty.');
  return [...(previous ?? []), value];
}

/** Repeatable key=value flags collect into a map. */
export function keyValue(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError('expected key=value.');
  return { ...(previous ?? {}), [value.slice(0, i)]: value.slice(i + 1) };
}

/** host:port of the broker's gRPC endpoint. */
export function hostPort(value: string): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new InvalidArgumentError('expected host:port, e.g. 127.0.0.1:7443.');
  }
  return value;
}

/** http(s)://host[:port] of the broker's REST API. */
export function serverUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('expected a URL such as http://127.0.0.1:8080.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError('expected an http:// or https:// URL.');
  }
  return value.replace(/\/+$/, '');
}
