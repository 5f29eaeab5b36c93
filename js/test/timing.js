// Arrival times against recorded offsets, with tolerances for a loaded 2-core machine: a chunk
// may come late (load) but never before its recorded offset, and the gaps between chunks are the
// recorded ones when the lateness stays about the same along the stream.

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** How late each arrival (s since the call) came after its recorded offset (s). */
export function lateness(arrivals, recorded) {
  if (arrivals.length !== recorded.length) {
    throw new Error(`${arrivals.length} arrivals for ${recorded.length} recorded offsets`);
  }
  return arrivals.map((at, i) => at - recorded[i]);
}
