export default {
  testMatch: ["<rootDir>/test/jest/**/*.test.js"],
  transform: {}, // native ESM (NODE_OPTIONS=--experimental-vm-modules)
  testTimeout: 60_000,
  globalSetup: "ssevcr/jest-setup", // one replay server for the run, a session per test
  globalTeardown: "ssevcr/jest-teardown",
};
