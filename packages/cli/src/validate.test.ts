import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  clusterId,
  collect,
  duration,
  hostPort,
  keyValue,
  nonNegativeInt,
  positiveInt,
  serverUrl,
} from './validate.js';

describe('argument parsers', () => {
  it.each([
    [clusterId, 'gpu-east', 'gpu-east'],
    [nonNegativeInt, '0', 0],
    [positiveInt, '8', 8],
    [duration, '1m30s', 90_000],
    [hostPort, '127.0.0.1:7443', '127.0.0.1:7443'],
    [hostPort, 'broker.lab:443', 'broker.lab:443'],
    [serverUrl, 'https://broker:8080/', 'https://broker:8080'],
  ] as const)('%o accepts %s', (fn, input, want) => {
    expect((fn as (v: string) => unknown)(input)).toEqual(want);
  });

  it.each([
    [clusterId, 'GPU'],
    [clusterId, '-east'],
    [nonNegativeInt, '-1'],
    [nonNegativeInt, '1.5'],
    [positiveInt, '0'],
    [duration, 'soon'],
    [duration, '0s'],
    [hostPort, '127.0.0.1'],
    [hostPort, 'host:99999'],
    [serverUrl, 'ftp://x'],
    [serverUrl, 'not a url'],
  ] as const)('%o refuses %s with a reason', (fn, input) => {
    expect(() => (fn as (v: string) => unknown)(input)).toThrow(InvalidArgumentError);
  });

  it('collects repeated flags', () => {
    expect(collect('b', collect('a', undefined))).toEqual(['a', 'b']);
    expect(keyValue('b=2', keyValue('a=1', undefined))).toEqual({ a: '1', b: '2' });
    expect(() => keyValue('novalue', undefined)).toThrow(/key=value/);
  });
});
