// The pressure scenarios of issue 16, as bench/run.ts lists its steps: one place to add them, so the runner's own
// list changes by one line.
import { isolationScenario } from './isolation';
import { loopOverloadScenario } from './loop-overload';
import type { Plan } from './plan';
import { surgeScenario } from './surge';
import type { Environment, ScenarioResult } from './types';
import { workersOverloadScenario } from './workers-overload';

export const PRESSURE_SCENARIOS = ['surge', 'isolation', 'workers-overload', 'loop-overload'] as const;
export type PressureScenarioId = (typeof PRESSURE_SCENARIOS)[number];

export function pressureSteps(
  plan: Plan,
  env: Environment,
): [PressureScenarioId, string, () => Promise<ScenarioResult>][] {
  return [
    ['surge', '9. Surge on a healthy downstream', () => surgeScenario(plan, env)],
    ['isolation', '10. Isolation', () => isolationScenario(plan, env)],
    ['workers-overload', '11. Worker threads at 3× capacity', () => workersOverloadScenario(plan, env)],
    ['loop-overload', '12. The event loop at 3× capacity', () => loopOverloadScenario(plan, env)],
  ];
}
