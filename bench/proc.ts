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
