// How long each scenario runs: the full run (under fifteen minutes) and the --quick one (under two).

export interface Plan {
  quick: boolean;
  storyWarmupS: number;
  storyAmountAt1: number;
  storyDurationS: number;
  overheadRounds: number;
  overheadWarmupS: number;
  overheadDurationS: number;
  tailWarmupS: number;
  tailDurationS: number;
  overloadWarmupS: number;
  overloadDurationS: number;
  blockingWarmupS: number;
  blockingDurationS: number;
  mixedWarmupS: number;
  mixedDurationS: number;
}

export const quickPlan: Plan = {
  quick: true,
  storyWarmupS: 1,
  storyAmountAt1: 4,
  storyDurationS: 2,
  overheadRounds: 2,
  overheadWarmupS: 1,
  overheadDurationS: 1,
  tailWarmupS: 1,
  tailDurationS: 3,
  overloadWarmupS: 1,
  overloadDurationS: 3,
  blockingWarmupS: 1,
  blockingDurationS: 2,
  mixedWarmupS: 1,
  mixedDurationS: 3,
};

export const fullPlan: Plan = {
  quick: false,
  storyWarmupS: 2,
  storyAmountAt1: 30,
  storyDurationS: 12,
  overheadRounds: 20,
  overheadWarmupS: 3,
  overheadDurationS: 2,
  tailWarmupS: 2,
  tailDurationS: 20,
  overloadWarmupS: 2,
  overloadDurationS: 15,
  blockingWarmupS: 2,
  blockingDurationS: 15,
  mixedWarmupS: 2,
  mixedDurationS: 15,
};
