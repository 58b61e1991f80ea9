export { fanout } from './middleware';
export { gather, type GatherOptions } from './gather';
export { budget } from './budget';
export {
  parseServerTiming,
  type ServerTimingEntry,
  type ServerTimingOutcome,
  type ServerTimings,
  type ServerTimingSource,
} from './testing';
export {
  FanoutError,
  BudgetExceededError,
  TaskFailedError,
  TaskSkippedError,
  OverloadedError,
  ClientClosedError,
  CallTooLargeError,
  SiblingFailedError,
  WorkerCrashedError,
  WorkerScriptError,
  WorkerArgumentsError,
} from './errors';
export { DownstreamError } from './fetch';
export { drainable, type Drainable } from './drain';
export { MemoryLimitStore } from './stores/memory';
export { RedisLimitStore, type RedisLimitStoreOptions, type RedisEvalClient } from './stores/redis';
export type {
  FanoutOptions,
  AdaptiveConcurrency,
  AdmissionOptions,
  EventLoopOptions,
  EventLoopStats,
  BudgetOptions,
  LimitOptions,
  LimitStore,
  RetryOptions,
  WorkerOptions,
  FanoutMiddleware,
  Fanout,
  FanoutStats,
  DependencyStats,
  WorkerStats,
  TransitEstimate,
  CallOptions,
  Task,
  TaskFn,
  TaskSpec,
  Tasks,
  CheckedTasks,
  TaskContext,
  TaskStatus,
  TaskEvent,
  FanoutObserver,
  ObservedTask,
  TaskProbe,
  ServerTimingOptions,
  TaskTiming,
  TaskValue,
  Results,
  Settled,
  SettledResults,
  WorkerMethods,
  WorkerMethodName,
  WorkerArgs,
  WorkerResult,
  Transferable,
  WorkerResourceLimits,
} from './types';
