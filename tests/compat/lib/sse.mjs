// sse.mjs - what the compatibility tests share to read a channel: the SDK's own SSE reader
// (subscribeToSessionStream), collected until `until(chunk, got)` says enough, the server ends
// it (Timeout-Seconds: timeoutInSeconds) or abortAfterMs passes (default: the same time).
import { apiClientManager } from "@trigger.dev/core/v3";

export async function collectChunks(sid, io, { until, timeoutInSeconds, abortAfterMs, ...options }) {
  const got = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), abortAfterMs ?? timeoutInSeconds * 1000);
  const stream = await apiClientManager
    .clientOrThrow()
    .subscribeToSessionStream(sid, io, { timeoutInSeconds, signal: stop.signal, ...options });
  try {
    for await (const chunk of stream) {
      got.push(chunk);
      if (until(chunk, got)) break;
    }
  } catch (e) {
    if (!stop.signal.aborted) throw e;
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
  return got;
}
