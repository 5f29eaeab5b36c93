export default {
  testMatch: ["<rootDir>/test/jest/**/*.test.js"],
  transform: {}, // native ESM (NODE_OPTIONS=--experimental-vm-modules)
  testTimeout: 60_000,
};
