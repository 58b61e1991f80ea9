// scripts/check-links.mjs: the links of README.md, CHANGELOG.md and docs/*.md resolve, both on GitHub and on the
// registry's page (which shows only what the tarball ships), and their #anchors name headings that exist.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

describe('the link check (scripts/check-links.mjs)', () => {
  const root = join(__dirname, '..', '..');
  let copy: string;
  const check = () =>
    promisify(execFile)(process.execPath, [join(copy, 'scripts', 'check-links.mjs')]).then(
      ({ stdout }) => ({ code: 0, out: stdout }),
      (error: { code: number; stderr: string }) => ({ code: error.code, out: error.stderr }),
    );
  const append = (file: string, text: string) =>
    writeFileSync(join(copy, file), readFileSync(join(copy, file), 'utf8') + text);

  beforeEach(() => {
    copy = mkdtempSync(join(tmpdir(), 'express-fanout-links-'));
    const paths = ['README.md', 'CHANGELOG.md', 'package.json', 'docs', 'scripts/check-links.mjs'];
    for (const path of [...paths, 'lib', 'examples', 'bench/results']) {
      cpSync(join(root, path), join(copy, path), { recursive: true });
    }
  });
  afterEach(() => rmSync(copy, { recursive: true, force: true }));

  it('passes on the repository as it is', async () => {
    expect(await check()).toEqual({
      code: 0,
      out: expect.stringMatching(/^Links: \d+ links into the repository/),
    });
  });

  it('fails on an anchor that names no heading, in the same file or another', async () => {
    append('README.md', '\nSee [the guide](docs/overload.md#no-such-heading) and [above](#nor-this-one).\n');
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(/README\.md:\d+: docs\/overload\.md#no-such-heading: no heading #no-such-heading/);
    expect(out).toMatch(/README\.md:\d+: #nor-this-one: no heading #nor-this-one in README\.md/);
  });

  it('fails on a relative link to a file the tarball does not ship, and says which URL to use', async () => {
    append('docs/tail.md', '\nThe code: [attempt.ts](../lib/attempt.ts).\n');
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(/docs\/tail\.md:\d+: \.\.\/lib\/attempt\.ts: lib\/attempt\.ts is not in the tarball/);
    expect(out).toContain('https://github.com/express-fanout/express-fanout/blob/main/lib/attempt.ts');
  });

  it('fails on a repository URL to a path that does not exist, and on a missing file', async () => {
    append(
      'README.md',
      '\n[gone](https://github.com/express-fanout/express-fanout/blob/main/lib/gone.ts) [x](docs/gone.md)\n',
    );
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toContain('no file lib/gone.ts');
    expect(out).toContain('no file docs/gone.md');
  });

  it('fails on a guide with a second H1, or with no summary under its title', async () => {
    append('docs/tail.md', '\n# Another title\n');
    writeFileSync(join(copy, 'docs/new-guide.md'), '# A guide\n\n## Straight to a section\n');
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(/docs\/tail\.md: a guide has one H1, on its first line \(found on lines 1, \d+\)/);
    expect(out).toContain('docs/new-guide.md: a guide starts with a paragraph that says what it covers');
  });

  it('checks a link whose text wraps onto the next line', async () => {
    append('docs/faq.md', '\nSee [the overload\nguide](overload.md#no-such-part) for more.\n');
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(
      /docs\/faq\.md:\d+: overload\.md#no-such-part: no heading #no-such-part in docs\/overload\.md/,
    );
  });

  it('reads no link inside a code block or a code span', async () => {
    append('docs/faq.md', '\n```md\n[in a block](nowhere.md)\n```\n\nAnd `[in a span](nowhere.md)`.\n');
    expect((await check()).code).toBe(0);
  });
});
