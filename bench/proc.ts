import { readFileSync } from 'node:fs';

/** Resident memory of a live process from /proc/<pid>/status, in MB (one decimal): peak (VmHWM) and now (VmRSS). */
export function memoryMb(pid: number): { peak: number; rss: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const mb = (key: string): number =>
      Math.round(Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) / 102.4) / 10;
    return { peak: mb('VmHWM'), rss: mb('VmRSS') };
  } catch {
    return null;
  }
}

/** User + system CPU seconds a process has used so far (/proc/<pid>/stat fields 14 and 15, in clock ticks). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: index 0 is field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Read and write system calls a process has made so far (/proc/<pid>/io `syscr`, `syscw`: read(2), write(2),
 * writev(2) and the like, each call counted once). A figure the machine's load does not move: how many calls a
 * piece of work takes. Null when the file cannot be read (another user's process, or not Linux).
 */
export function syscalls(pid: number): { reads: number; writes: number } | null {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
    const reads = field('syscr');
    const writes = field('syscw');
    return Number.isFinite(reads) && Number.isFinite(writes) ? { reads, writes } : null;
  } catch {
    return null;
  }
}
