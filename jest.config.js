/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  // examples/testing/: the testing guide's examples are test files, run as the suite's own.
  roots: ['<rootDir>/__tests__', '<rootDir>/examples/testing'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  moduleNameMapper: {
    '^express-fanout$': '<rootDir>/lib/index.ts',
    '^express-fanout/(prometheus|otel)$': '<rootDir>/lib/observe/$1.ts',
  },
  // Timing tests assert tolerance windows, never exact numbers; the machine is small and shared.
  testTimeout: 20000,
};
