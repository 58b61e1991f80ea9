// The demo's real file: a generated product catalog (NDJSON, ~0.5 MB) read with `fs.promises.readFile`.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

export const CATALOG_FILE = 'catalog.ndjson';

const PRODUCTS = 5000;

export interface CatalogSummary {
  file: string;
  bytes: number;
  products: number;
}

/** Writes the catalog unless it exists (to a temporary file renamed into place, like the database). */
export function ensureCatalog(file: string): { created: boolean } {
  if (existsSync(file)) return { created: false };
  mkdirSync(dirname(file), { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < PRODUCTS; i++) {
    const price = ((i * 7919) % 100000) / 100;
    lines.push(
      JSON.stringify({ sku: `sku-${i % 1000}-${i}`, name: `Product ${i}`, price, stock: (i * 31) % 500 }),
    );
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${lines.join('\n')}\n`);
  renameSync(tmp, file);
  return { created: true };
}

/** Reads the whole file; `signal` cancels the read (the fan-out aborts it at the deadline or on disconnect). */
export async function readCatalog(file: string, signal?: AbortSignal): Promise<CatalogSummary> {
  const text = await readFile(file, { encoding: 'utf8', signal });
  let products = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) products++;
  return { file: basename(file), bytes: Buffer.byteLength(text), products };
}
