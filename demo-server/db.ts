// The demo's embedded database: one generated table, big enough that a real query takes tens of ms.
// Everything here is synchronous (better-sqlite3 is a synchronous driver), so the demo's requests run
// `regionReport()` on the worker pool (worker.ts), where each thread opens the file read-only once.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';

export type DemoDatabase = Database.Database;

export const DB_FILE = 'demo.sqlite';

/** Rows of the generated `orders` table: ~16 MB, a full scan takes ~50 ms on a small machine. */
export const ORDER_ROWS = 400_000;

export const REGIONS = ['north', 'south', 'east', 'west', 'central'] as const;
export type Region = (typeof REGIONS)[number];

export const isRegion = (value: unknown): value is Region => REGIONS.includes(value as Region);

/** What the query answers: one region's orders, aggregated over the whole table. */
export interface RegionReport {
  region: Region;
  orders: number;
  revenue: number;
  average: number;
  largest: number;
}

// No index on `region`: the query must scan every row, which is what makes it cost tens of ms.
const REPORT_SQL = `
  SELECT COUNT(*) AS orders, ROUND(COALESCE(SUM(amount), 0), 2) AS revenue,
         ROUND(COALESCE(AVG(amount), 0), 2) AS average, COALESCE(MAX(amount), 0) AS largest
  FROM orders WHERE region = ?`;

/**
 * Creates the database file with its generated table, unless it exists. The table is built in a temporary file
 * renamed into place at the end, so an interrupted first start never leaves a half-filled database behind.
 */
export function ensureDatabase(file: string, rows = ORDER_ROWS): { created: boolean; ms: number } {
  if (existsSync(file)) return { created: false, ms: 0 };
  const started = performance.now();
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  const db = new Database(tmp);
  try {
    db.exec(`
      CREATE TABLE orders (
        id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, region TEXT NOT NULL,
        product TEXT NOT NULL, amount REAL NOT NULL, created INTEGER NOT NULL
      )`);
    // One INSERT ... SELECT over a recursive sequence: ~1 s for 400k rows, far faster than row-by-row inserts.
    const regions = REGIONS.map((region, i) => `WHEN ${i} THEN '${region}'`).join(' ');
    db.prepare(
      `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
       INSERT INTO orders (id, customer, region, product, amount, created)
       SELECT i, abs(random()) % 50000, CASE abs(random()) % ${REGIONS.length} ${regions} END,
              'sku-' || (abs(random()) % 1000), round((abs(random()) % 100000) / 100.0, 2),
              1700000000 + (i * 37) % 31536000
       FROM seq`,
    ).run(rows);
  } catch (error) {
    db.close();
    rmSync(tmp, { force: true });
    throw error;
  }
  db.close();
  renameSync(tmp, file);
  return { created: true, ms: performance.now() - started };
}

/** Opens the database read-only: the demo's worker threads only read it. */
export function openDatabase(file: string): DemoDatabase {
  return new Database(file, { readonly: true, fileMustExist: true });
}

const statements = new WeakMap<DemoDatabase, Database.Statement<[Region], Omit<RegionReport, 'region'>>>();

/** The demo's query, synchronous: it holds the thread that runs it for its whole duration. */
export function regionReport(db: DemoDatabase, region: Region): RegionReport {
  let statement = statements.get(db);
  if (!statement) {
    statement = db.prepare<[Region], Omit<RegionReport, 'region'>>(REPORT_SQL);
    statements.set(db, statement);
  }
  const row = statement.get(region);
  if (!row) throw new Error(`The report query returned no row for region ${region}`);
  return { region, ...row };
}
