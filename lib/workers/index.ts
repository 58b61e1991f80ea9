export { WorkerPool, type WorkerExecOptions } from './pool';
export { resolveWorkerOptions, defaultMaxWorkers, type ResolvedWorkerOptions } from './options';
export { checkArgs } from './clone-check';
