import express5 from 'express';

/** The Express module's shape; Express 4 is typed with Express 5's types (the surface used here is common). */
export type ExpressModule = typeof import('express');

// Express 4 is installed under the npm alias `express4`; it has no types of its own.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as ExpressModule;

/** Every integration suite runs once per supported Express major: `describe.each(expressVersions)`. */
export const expressVersions: ReadonlyArray<readonly [string, ExpressModule]> = [
  ['Express 5', express5],
  ['Express 4', express4],
];
