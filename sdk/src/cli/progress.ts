/**
 * Import progress: a bar with events/s and ETA on a terminal (cli-progress, on stderr), a plain line every
 * `intervalMs` otherwise (logs, CI), nothing with --json. The ETA is by bytes of the file read.
 */
import cliProgress from "cli-progress";
import { formatCount, formatDuration } from "./output.ts";

export interface ProgressFigures {
  /** Records settled (acknowledged by the server or refused locally) in this run. */
  settled: number;
  /** The last line of the acknowledged prefix. */
  through: number;
  bytes: number;
}

export interface Progress {
  update(p: ProgressFigures): void;
  stop(): void;
}

export type ProgressMode = "bar" | "lines" | "none";

export interface ProgressIO {
  /** Where "lines" mode writes. */
  write: (line: string) => void;
  /** Where the bar draws (a TTY in use; a stream with `isTTY` in tests). */
  stream: NodeJS.WritableStream;
  /** Milliseconds, monotonic. */
  now: () => number;
}

const defaultIO = (): ProgressIO => ({
  write: (l) => process.stderr.write(`${l}\n`),
  stream: process.stderr,
  now: () => performance.now(),
});

export function createProgress(
  mode: ProgressMode,
  total: number,
  intervalMs: number,
  io: Partial<ProgressIO> = {},
): Progress {
  const { write, stream, now: clock } = { ...defaultIO(), ...io };
  const start = clock();
  const figures = (p: ProgressFigures) => {
    const elapsed = (clock() - start) / 1000;
    const rate = elapsed > 0 ? p.settled / elapsed : 0;
    const fraction = total > 0 ? Math.min(1, p.bytes / total) : 1;
    const eta = p.bytes > 0 && elapsed > 0 ? (total - p.bytes) / (p.bytes / elapsed) : Number.NaN;
    return { rate, fraction, eta };
  };
  if (mode === "none") return { update() {}, stop() {} };
  if (mode === "lines") {
    let last = Number.NEGATIVE_INFINITY;
    return {
      update(p) {
        const now = clock();
        if (now - last < intervalMs) return;
        last = now;
        const f = figures(p);
        write(
          `progress: ${formatCount(p.settled)} records acknowledged (through line ${p.through}), ${formatCount(f.rate)} events/s, ${(f.fraction * 100).toFixed(1)}% read, ETA ${formatDuration(f.eta)}`,
        );
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: "importing |{bar}| {percentage}% | {records} records | {rate} events/s | ETA {eta_formatted}",
      hideCursor: true,
      etaBuffer: 50,
      fps: 10,
      stream,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(Math.max(total, 1), 0, { records: "0", rate: "0" });
  return {
    update(p) {
      const f = figures(p);
      bar.update(Math.min(p.bytes, Math.max(total, 1)), { records: formatCount(p.settled), rate: formatCount(f.rate) });
    },
    stop() {
      bar.stop();
    },
  };
}
