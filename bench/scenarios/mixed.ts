// Scenario 6, mixed: does a CPU backlog on the worker pool slow an IO route of the same server? The IO route is
// measured alone, then next to a CPU route that gets more work than the pool's thread can do.
import { spawn } from 'node:child_process';
import { runLoad } from '../harness/load';
import { say } from '../harness/progress';
import { mixed } from '../servers/mixed-params';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import type { Environment, ScenarioResult, Target, VariantRun } from './types';
import { load, skipPackage, withServer } from './variant';

const config =
  `fanout({ concurrency: ${mixed.concurrency}, workers: { script, maxWorkers: ${mixed.maxWorkers} } }); ` +
  `/io: all() of three ${mixed.ioCallsMs[0]} ms calls; /cpu: all({ fib: ({ worker }) => worker('fib', [${mixed.fibN}]) })`;

export async function mixedScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const runs: VariantRun[] = [
    { id: 'alone', label: 'IO route alone', kind: 'package', config },
    { id: 'backlog', label: 'IO route next to a CPU backlog', kind: 'package', config },
    {
      id: 'burner',
      label: 'IO route next to a process burning one core (control)',
      kind: 'package',
      config: 'the IO route alone, while another process spins on one core: what a busy core costs by itself',
    },
  ];
  for (const run of runs) {
    if (skipPackage(run, env)) continue;
    say(`  mixed · ${run.label}`);
    await withServer(run, { node: { file: 'mixed', variant: 'pool' } }, async (server) => {
      // Both routes warm up (the thread starts, the JIT compiles fib), whichever is measured.
      const [warmIo, warmCpu] = await Promise.all([
        load(server, `${run.label} warm-up`, { path: '/io', connections: 4, durationS: plan.mixedWarmupS }),
        runLoad(`http://127.0.0.1:${server.port}`, {
          path: '/cpu',
          connections: 1,
          durationS: plan.mixedWarmupS,
        }),
      ]);
      if (warmIo.ok === 0 || warmCpu.ok === 0) {
        const codes = [...Object.keys(warmIo.byStatus), ...Object.keys(warmCpu.byStatus)].join(', ');
        run.skipped = `the warm-up failed (answered ${codes || 'nothing'})`;
        say(`  - ${run.label}: skipped, ${run.skipped}`);
        return;
      }
      await server.numbers(true);
      // The control: one core taken by another process, as the pool's thread takes one in the backlog run.
      const burner =
        run.id === 'burner' ? spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }) : undefined;
      const io = load(server, `${run.label}: /io`, {
        path: '/io',
        connections: mixed.ioConnections,
        rate: mixed.ioRate,
        instances: 10,
        durationS: plan.mixedDurationS,
      });
      const cpu =
        run.id === 'backlog'
          ? runLoad(`http://127.0.0.1:${server.port}`, {
              path: '/cpu',
              connections: mixed.cpuConnections,
              durationS: plan.mixedDurationS,
            })
          : undefined;
      try {
        run.load = await io;
        if (cpu) run.loads = { cpu: await cpu };
      } finally {
        burner?.kill('SIGKILL');
      }
      run.server = await server.numbers();
      const c = run.loads?.cpu;
      say(
        `    /io p99 ${fmt.ms(run.load.latency.p99)} ms, ${fmt.rps(run.load.okRps)} 2xx/s` +
          (c ? `; /cpu ${fmt.rps(c.okRps)} 2xx/s, p99 ${fmt.ms(c.latency.p99)} ms, non-2xx ${c.non2xx}` : ''),
      );
    });
  }
  const [alone, backlog, burner] = runs as [VariantRun, VariantRun, VariantRun];
  const aloneP99 = alone.load?.latency.p99;
  const aloneRps = alone.load?.okRps;
  const targets: Target[] = [
    check(
      'mixed',
      backlog,
      `/io p99 with the CPU backlog ≤ 1.2× alone${aloneP99 ? ` (${fmt.ms(aloneP99 * 1.2)} ms)` : ''}`,
      aloneP99 ? backlog.load?.latency.p99 : undefined,
      (v) => v <= aloneP99! * 1.2,
      (v) => `${fmt.ms(v)} ms (${fmt.ratio(v / aloneP99!)} alone)`,
    ),
    check(
      'mixed',
      backlog,
      `/io 2xx req/s with the CPU backlog ≥ 0.9× alone${aloneRps ? ` (${fmt.rps(aloneRps * 0.9)})` : ''}`,
      aloneRps ? backlog.load?.okRps : undefined,
      (v) => v >= aloneRps! * 0.9,
      (v) => `${fmt.rps(v)} (${fmt.ratio(v / aloneRps!)} alone)`,
    ),
  ];
  const notes: string[] = [];
  const burnerP99 = burner.load?.latency.p99;
  if (aloneP99 && burnerP99 && backlog.load) {
    notes.push(
      `A core taken by another process alone moves /io p99 from ${fmt.ms(aloneP99)} to ${fmt.ms(burnerP99)} ms ` +
        `(${fmt.ratio(burnerP99 / aloneP99)}); next to the CPU backlog it is ${fmt.ms(backlog.load.latency.p99)} ms ` +
        `(${fmt.ratio(backlog.load.latency.p99 / burnerP99)} the control): what is left above the control is the pool's.`,
    );
  }
  return {
    id: 'mixed',
    title: 'Mixed IO and CPU',
    setup:
      `\`/io\` runs three ${mixed.ioCallsMs[0]} ms calls at once and is offered ${mixed.ioRate} req/s from ` +
      `${mixed.ioConnections} connections for ${plan.mixedDurationS} s, alone, then while \`/cpu\` (fib(${mixed.fibN}) ` +
      `on the pool, about 10 ms of one core) is hit by ${mixed.cpuConnections} connections as fast as they can: ` +
      `more CPU work than the pool's ${mixed.maxWorkers} thread can do and more requests than the ${mixed.concurrency} ` +
      `IO slots, so the CPU calls queue for the thread. One thread leaves the event loop a core of this 2-core machine. ` +
      `The control runs the IO route alone next to another process spinning on one core.`,
    variants: runs,
    tables: [
      {
        columns: [
          'variant',
          '/io p50 ms',
          '/io p99 ms',
          '/io max ms',
          '/io 2xx req/s',
          '/io non-2xx',
          '/cpu 2xx req/s',
          '/cpu p99 ms',
          '/cpu non-2xx',
          'event-loop delay p99 ms',
        ],
        rows: runs.map((r) => {
          if (!r.load) return [r.label, skippedCell(r), '', '', '', '', '', '', '', ''];
          const c = r.loads?.cpu;
          return [
            r.label,
            fmt.ms(r.load.latency.p50),
            fmt.ms(r.load.latency.p99),
            fmt.ms(r.load.latency.max),
            fmt.rps(r.load.okRps),
            `${r.load.non2xx + r.load.errors}`,
            c ? fmt.rps(c.okRps) : '—',
            c ? fmt.ms(c.latency.p99) : '—',
            c ? `${c.non2xx + c.errors}` : '—',
            fmt.ms(r.server?.eventLoopDelay.p99),
          ];
        }),
      },
    ],
    targets,
    chart: {
      title: 'Mixed: latency of an IO route alone and next to a CPU backlog on the worker pool',
      rows: runs
        .filter((r) => r.load)
        .map((r) => ({
          label: r.label,
          p50: r.load!.latency.p50,
          p99: r.load!.latency.p99,
          note: `${fmt.rps(r.load!.okRps)} 2xx/s`,
          kind: r.kind,
        })),
    },
    notes,
  };
}
