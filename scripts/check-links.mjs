// Checks the links of README.md, CHANGELOG.md and docs/*.md, which the tarball ships and the registry's page shows:
// - a relative link must name a file that exists and that the tarball ships too (package.json `files`), since a
//   reader of the registry's page or of node_modules has nothing else; anything else of the repository is linked
//   by its URL, https://github.com/<repository>/blob/main/<path> (or tree/, or raw.githubusercontent.com for an
//   image), and that path must exist here;
// - every #anchor must be a heading of the file it points into (GitHub's rule: lower case, punctuation dropped,
//   spaces to hyphens, a repeated heading gets -1, -2 …).
// Other sites are not fetched. Fails naming each broken link with its file and line. A guide (docs/*.md) also
// has one H1, its title on the first line, followed by a paragraph that says what it covers.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const repository = /github\.com[/:]([\w.-]+\/[\w.-]+?)(?:\.git)?$/.exec(pkg.repository?.url ?? '')?.[1];
const REPO_URL = repository
  ? new RegExp(
      `^https://(?:github\\.com/${repository}/(?:blob|tree)|raw\\.githubusercontent\\.com/${repository})/main/([^#?]*)(?:#(.*))?$`,
    )
  : null;

/** Whether `npm pack` ships a path, from package.json `files` (a folder, a file, or a `dir/*.ext` glob). */
function ships(path) {
  const rel = relative(root, path).split('\\').join('/');
  if (rel === 'package.json' || /^(README|CHANGELOG|LICENSE)(\.md)?$/i.test(rel)) return true;
  return (pkg.files ?? []).some((entry) => {
    const glob = /^(.*)\/\*(\.\w+)$/.exec(entry);
    if (glob) return dirname(rel) === glob[1] && rel.endsWith(glob[2]);
    return rel === entry || rel.startsWith(`${entry}/`);
  });
}
const files = [
  'README.md',
  'CHANGELOG.md',
  ...readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
].filter((file) => existsSync(join(root, file)));

/** The text of a file without its fenced code blocks (a `#` or `[x](y)` inside one is not markdown). */
function prose(text) {
  const out = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      out.push('');
      continue;
    }
    out.push(fenced ? '' : line);
  }
  return out;
}

export function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/<[^>]+>/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

const anchorCache = new Map();
function anchors(file) {
  if (!anchorCache.has(file)) {
    const seen = new Map();
    const set = new Set();
    for (const line of prose(readFileSync(file, 'utf8'))) {
      const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
      if (!heading) continue;
      const base = slug(heading[1]);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      set.add(n === 0 ? base : `${base}-${n}`);
    }
    anchorCache.set(file, set);
  }
  return anchorCache.get(file);
}

const LINK = /!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g;
const problems = [];
let checked = 0;
for (const file of files) {
  const path = join(root, file);
  // A link may wrap onto the next line: each line is read with the rest of its paragraph while a `[` is left
  // open at its end, and only the links that start on the line itself count (the next lines have their turn).
  const lines = prose(readFileSync(path, 'utf8'));
  lines.forEach((line, i) => {
    let text = line;
    for (let j = i + 1; j < lines.length && lines[j].trim() !== '' && /\[[^\]]*$/.test(text); j++) {
      text += ` ${lines[j]}`;
    }
    const code = text.replace(/`[^`]*`/g, (span) => (span.includes('](') ? ' '.repeat(span.length) : span));
    for (const match of code.matchAll(LINK)) {
      if (match.index >= line.length) continue;
      const target = match[1];
      const repo = REPO_URL?.exec(target);
      let into;
      let anchor;
      if (repo) {
        into = resolve(root, decodeURIComponent(repo[1]));
        anchor = repo[2];
      } else if (/^[a-z][a-z+.-]*:/i.test(target)) {
        continue; // another site, mailto:
      } else {
        const [pathPart, hash] = target.split('#');
        into = pathPart === '' ? path : resolve(dirname(path), decodeURIComponent(pathPart));
        anchor = hash;
      }
      checked++;
      if (!into.startsWith(root) || !existsSync(into)) {
        problems.push(`${file}:${i + 1}: ${target}: no file ${relative(root, into)}`);
        continue;
      }
      if (!repo && !ships(into)) {
        problems.push(
          `${file}:${i + 1}: ${target}: ${relative(root, into)} is not in the tarball (package.json \`files\`), ` +
            `so the link breaks on the registry's page: link https://github.com/${repository}/blob/main/${relative(root, into)}`,
        );
        continue;
      }
      if (anchor === undefined) continue;
      if (statSync(into).isDirectory() || !into.endsWith('.md')) {
        problems.push(`${file}:${i + 1}: ${target}: an anchor into a file that is not markdown`);
      } else if (!anchors(into).has(anchor)) {
        problems.push(`${file}:${i + 1}: ${target}: no heading #${anchor} in ${relative(root, into)}`);
      }
    }
  });
}

// Each guide is one page: one H1, its title, then a paragraph that says what the guide covers.
for (const file of files.filter((f) => f.startsWith('docs/'))) {
  const lines = prose(readFileSync(join(root, file), 'utf8'));
  const titles = lines.flatMap((line, i) => (/^# /.test(line) ? [i + 1] : []));
  if (titles.length !== 1 || titles[0] !== 1) {
    problems.push(
      `${file}: a guide has one H1, on its first line (found on lines ${titles.join(', ') || 'none'})`,
    );
  }
  const summary = lines.slice(1).find((line) => line.trim() !== '');
  if (summary === undefined || /^(#|<!--|\||```|- )/.test(summary)) {
    problems.push(`${file}: a guide starts with a paragraph that says what it covers, under its title`);
  }
}

if (problems.length) {
  console.error(`Broken links:\n${problems.join('\n')}`);
  process.exitCode = 1;
} else {
  console.log(
    `Links: ${checked} links into the repository in ${files.length} files, each to a file and heading that exist`,
  );
}
