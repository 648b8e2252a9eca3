// Measuring helpers: latency percentiles, our own CPU share, and the server processes' CPU
// share and memory read from /proc (the servers run on this machine, pinned to another core).
import { readFileSync } from 'node:fs';

export const nowMicros = () => Math.round(performance.now() * 1000);

export function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// p50/p99 in milliseconds of a Float64Array/array of microsecond samples (sorted in place).
export function latencySummary(samples) {
  const sorted = Float64Array.from(samples).sort();
  const ms = (v) => (v === null ? null : Math.round(v / 10) / 100);
  return { p50_ms: ms(percentile(sorted, 50)), p99_ms: ms(percentile(sorted, 99)) };
}

const CLK_TCK = 100; // Linux USER_HZ; /proc/<pid>/stat counts CPU time in these ticks

function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}

export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// Starts a CPU window; stop() returns shares of one core (1.0 = one core fully busy) for this
// load generator and for each server pid.
export function cpuWindow(serverPids) {
  const t0 = performance.now();
  const self0 = process.cpuUsage();
  const srv0 = serverPids.map(procCpuSeconds);
  return {
    stop() {
      const wall = (performance.now() - t0) / 1000;
      const self = process.cpuUsage(self0);
      const round = (v) => Math.round(v * 100) / 100;
      return {
        loadgen_cpu: round((self.user + self.system) / 1e6 / wall),
        server_cpu: serverPids.map((pid, i) => round((procCpuSeconds(pid) - srv0[i]) / wall)),
      };
    },
  };
}
