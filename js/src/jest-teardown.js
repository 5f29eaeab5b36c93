// jest `globalTeardown: "ssevcr/jest-teardown"`: stops what ssevcr/jest-setup started.
export default async function teardown() {
  await globalThis.__ssevcrStopRunServer?.();
}
