// How the demo stops, as a container runtime stops it: SIGTERM to `npm start` (npm passes it to its child, which
// the start script makes the server itself: `exec node …`), and SIGTERM while the demo is still starting (its
// handlers are installed before it listens). Processes of their own; generous windows, the machine is shared.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

/** Collects a child's output and resolves with its exit once it ends. */
function watch(child: ChildProcess) {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    exited,
    output: () => output,
    async until(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(output);
        if (match) return match;
        if (child.exitCode !== null || child.signalCode !== null || Date.now() > end) {
          throw new Error(`no ${pattern} in the output:\n${output}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start and SIGTERM', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'express-fanout-start-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("passes npm's SIGTERM to the server: the start script execs it instead of leaving it under a shell", async () => {
    // The package's own start script, pointed at a server that says when it gets the signal.
    const { scripts } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(scripts.start).toContain('build/demo-server/server.js');
    const start = scripts.start!.replace('build/demo-server/server.js', 'server.js');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'start-check', scripts: { start } }));
    writeFileSync(
      join(dir, 'server.js'),
      `require('node:http').createServer().listen(0, () => console.log('listening ' + process.pid));
       process.on('SIGTERM', () => { console.log('server got SIGTERM'); process.exit(0); });`,
    );
    const npm = spawn('npm', ['start', '--silent'], {
      cwd: dir,
      env: { ...process.env, npm_config_loglevel: 'silent' },
    });
    const run = watch(npm);
    let serverPid = 0;
    try {
      serverPid = Number((await run.until(/listening (\d+)/, 30_000))[1]);
      npm.kill('SIGTERM');
      await run.exited;
      await run.until(/server got SIGTERM/, 5000).catch(() => undefined);
      const end = Date.now() + 5000;
      while (alive(serverPid) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
      expect({ serverAlive: alive(serverPid), output: run.output() }).toEqual({
        serverAlive: false,
        output: expect.stringContaining('server got SIGTERM'),
      });
    } finally {
      if (serverPid && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
      npm.kill('SIGKILL');
    }
  }, 60_000);
});

describe('the demo server and SIGTERM', () => {
  let dataDir: string;
  beforeAll(() => (dataDir = mkdtempSync(join(tmpdir(), 'fanout-demo-signals-'))));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('stops cleanly on a SIGTERM that arrives while it is warming up: its handlers are installed before it listens', async () => {
    const demo = spawn(process.execPath, ['--require', 'tsx/cjs', 'demo-server/server.ts'], {
      cwd: root,
      env: { ...process.env, PORT: '0', DEMO_DATA_DIR: dataDir },
    });
    const run = watch(demo);
    try {
      await run.until(/listening on http:\/\/localhost:\d+; warming up/, 90_000);
      demo.kill('SIGTERM');
      const { code, signal } = await run.exited;
      // Its handler took the signal (the default one would have ended the process by SIGTERM, mid-request).
      expect({ signal, output: run.output() }).toEqual({
        signal: null,
        output: expect.stringContaining('SIGTERM: finishing the requests in flight'),
      });
      // Then it stopped once started, or, where a loaded machine made its warm-up miss the budget, the start
      // failed as it does without a signal: either way through its own exit, never the signal's.
      expect(run.output()).toMatch(
        code === 0 ? /\nstopped\n/ : /The demo could not start: .*warm-up request/,
      );
      expect(run.output()).not.toContain('Ctrl-C stops it'); // the banner of a started demo never came
    } finally {
      demo.kill('SIGKILL');
    }
  }, 120_000);
});
