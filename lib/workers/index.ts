export { WorkerPool, type WorkerExecOptions } from './pool';
export { resolveWorkerOptions, defaultMaxWorkers, type ResolvedWorkerOptions } from './options';
