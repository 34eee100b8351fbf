// The benchmarks' goals, each stated once: the table prints the text made from it and checks
// the measured value against the same numbers. Values are in the goal's unit (memory in MB,
// 10^6 bytes, as the goals are written).

export type GoalOp = '<' | '≤' | '≥' | '=';

export interface Goal {
  op: GoalOp;
  limit: number;
  /** Appended to the limit when printed: '×', ' ms', ' MB', '/s', ' core'. */
  unit: string;
}

export const GOALS = {
  offloadLatencyP50Ratio: { op: '≤', limit: 1.5, unit: '×' },
  offloadLatencyP99Ratio: { op: '≤', limit: 2, unit: '×' },
  statusP99Ms: { op: '<', limit: 500, unit: ' ms' },
  throughputRatio: { op: '≥', limit: 0.7, unit: '×' },
  shimCores: { op: '≤', limit: 0.5, unit: ' core' },
  shimPeakRssMB: { op: '≤', limit: 300, unit: ' MB' },
  brokerScalePeakRssMB: { op: '<', limit: 500, unit: ' MB' },
  capacityP99Ms: { op: '<', limit: 20, unit: ' ms' },
  placementsPerSecondSqlite: { op: '≥', limit: 2000, unit: '/s' },
  placementsPerSecondRedis: { op: '≥', limit: 1000, unit: '/s' },
  placeP99MsSqlite: { op: '<', limit: 10, unit: ' ms' },
  doubleBookedGpus: { op: '=', limit: 0, unit: '' },
} as const satisfies Record<string, Goal>;

export type GoalName = keyof typeof GOALS;

/** Bytes per MB, the unit memory goals and values are printed in. */
export const MB = 1e6;

export function goalText(g: Goal): string {
  return g.op === '=' ? `${g.limit}${g.unit}` : `${g.op} ${g.limit}${g.unit}`;
}

export function meets(g: Goal, value: number): boolean {
  switch (g.op) {
    case '<':
      return value < g.limit;
    case '≤':
      return value <= g.limit;
    case '≥':
      return value >= g.limit;
    case '=':
      return value === g.limit;
  }
}

/** The `goal` and `met` fields of a table row for `value`. */
export function goal(name: GoalName, value: number): { goal: string; met: boolean } {
  const g = GOALS[name];
  return { goal: goalText(g), met: meets(g, value) };
}
