/**
 * Polls `probe` every `everyMs` until it holds; resolves with the milliseconds since `since` (a
 * performance.now() reading, by default the call's start). Fails after `timeoutMs`.
 */
export async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, since = performance.now(), everyMs = 5): Promise<number> {
  for (;;) {
    if (await probe()) return performance.now() - since;
    if (performance.now() - since > timeoutMs) throw new Error(`not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
