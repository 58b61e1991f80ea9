// worker.mjs: an ES-module worker script that reads what it needs before it registers its methods
import { readFile } from 'node:fs/promises';
import { workerData } from 'node:worker_threads';
import workerpool from 'workerpool';

// fanout({ workers: { script: join(__dirname, 'worker.mjs'), workerData: { config: '/etc/app.json' } } })
const config = JSON.parse(await readFile(workerData.config, 'utf8')); // top-level await: fine

workerpool.worker({ setting: (name) => config[name] ?? null });
