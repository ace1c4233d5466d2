import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { inParallel } from "./parallel.ts";
import { ApiError, type PlatformApi } from "./platform-api.ts";
import type { SimCustomer, SimDeviceSpec } from "./scenarios/index.ts";

interface StateData {
  /** The platform these tokens belong to. */
  platform: string;
  devices: Record<string, { token: string; kind: string; subject?: string }>;
  /** What was recorded for each customer: opted in (true) or explicitly out (false). */
  consent: Record<string, boolean>;
}

/**
 * Where the simulator keeps what the platform tells only once: device tokens.
 * One file per platform address and fleet prefix, readable by its owner only.
 */
export class StateFile {
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly file: string,
    readonly data: StateData,
  ) {}

  /** The state file for a fleet (`prefix`) on a platform, in `dir`; or exactly `file`. */
  static async open(
    where: { dir: string } | { file: string },
    platformUrl: string,
    prefix: string,
  ): Promise<StateFile> {
    const url = new URL(platformUrl);
    const file =
      "file" in where
        ? where.file
        : path.join(
            where.dir,
            `${prefix}@${url.hostname}-${url.port || (url.protocol === "https:" ? "443" : "80")}.json`,
          );
    let data: StateData = { platform: platformUrl, devices: {}, consent: {} };
    try {
      data = { ...data, ...(JSON.parse(await readFile(file, "utf8")) as Partial<StateData>) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        throw new Error(`cannot read the simulator's state file ${file}: ${(err as Error).message}`);
    }
    return new StateFile(file, data);
  }

  /** Writes soon, at most a few times a second, so that a token is never only in memory for long. */
  saveSoon(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.save();
    }, 200);
  }

  /** Writes now (atomically: a crash leaves the old file or the new one). */
  save(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const text = `${JSON.stringify(this.data, null, 1)}\n`;
    this.writing = this.writing.then(async () => {
      await mkdir(path.dirname(this.file), { recursive: true });
      const tmp = `${this.file}.tmp`;
      await writeFile(tmp, text, { mode: 0o600 });
      await rename(tmp, this.file);
    });
    return this.writing;
  }
}

export interface ProvisionResult {
  tokens: Map<string, string>;
  created: number;
  reused: number;
}

/**
 * Provisions the fleet's devices, reusing those the state file has tokens for.
 * A device the platform knows but whose token is lost cannot be used again
 * (tokens are shown once): that is an error naming the way out.
 */
export async function provisionDevices(
  api: PlatformApi,
  state: StateFile,
  devices: readonly SimDeviceSpec[],
  options: { concurrency: number; signal?: AbortSignal; onProgress?(done: number, created: number): void },
): Promise<ProvisionResult> {
  const registered = new Map((await api.listDevices()).map((d) => [d.id, d]));
  const kept = state.data.devices;
  // A platform that lost devices we hold tokens for was reset: what we recorded there is gone too.
  if (Object.keys(kept).some((id) => !registered.has(id))) {
    for (const id of Object.keys(kept)) if (!registered.has(id)) delete kept[id];
    state.data.consent = {};
  }
  const tokens = new Map<string, string>();
  const missing: SimDeviceSpec[] = [];
  for (const device of devices) {
    const known = registered.get(device.id);
    const mine = kept[device.id];
    if (!known) {
      missing.push(device);
      continue;
    }
    const hint = `use another --prefix (or the --state directory that has its token)`;
    if (!mine)
      throw new Error(
        `device ${device.id} exists on ${api.url} but its token is not in ${state.file}; tokens are shown only once: ${hint}`,
      );
    if (known.revoked) throw new Error(`device ${device.id} is revoked on ${api.url}: ${hint}`);
    if ((known.subject ?? undefined) !== device.subject) {
      throw new Error(
        `device ${device.id} exists on ${api.url} for customer ${known.subject ?? "(none)"}, but this fleet has it for ${device.subject ?? "(none)"}: ${hint}`,
      );
    }
    tokens.set(device.id, mine.token);
  }
  const reused = tokens.size;
  options.onProgress?.(reused, 0);
  let created = 0;
  try {
    await inParallel(
      missing,
      options.concurrency,
      async (device) => {
        const { token } = await api.provision({
          id: device.id,
          kind: device.kind,
          ...(device.subject ? { subject: device.subject } : {}),
        });
        kept[device.id] = { token, kind: device.kind, ...(device.subject ? { subject: device.subject } : {}) };
        tokens.set(device.id, token);
        created += 1;
        state.saveSoon();
        options.onProgress?.(reused + created, created);
      },
      options.signal,
    );
  } finally {
    await state.save();
  }
  return { tokens, created, reused };
}

export const ALL_PURPOSES = { analytics: true, personalization: true, feedback: true } as const;
const NO_PURPOSES = { analytics: false, personalization: false, feedback: false } as const;

/**
 * Records each customer's consent as the fleet plan says: opted-in customers
 * opt in to every purpose; the others have no record (the default is no), or
 * an explicit opt-out if an earlier run had opted them in.
 * Resolves `unavailable` when the platform has no consent API.
 */
export async function recordConsent(
  api: PlatformApi,
  state: StateFile,
  customers: readonly SimCustomer[],
  options: { concurrency: number; signal?: AbortSignal; onProgress?(done: number, total: number): void },
): Promise<{ recorded: number; unavailable: boolean }> {
  const recorded = state.data.consent;
  const changes = customers.filter((c) => (c.optedIn ? recorded[c.id] !== true : recorded[c.id] === true));
  let done = 0;
  let unavailable = false;
  try {
    await inParallel(
      changes,
      options.concurrency,
      async (customer) => {
        if (unavailable) return;
        try {
          await api.setConsent(customer.id, customer.optedIn ? ALL_PURPOSES : NO_PURPOSES);
        } catch (err) {
          if (err instanceof ApiError && err.code === "not_found") {
            unavailable = true;
            return;
          }
          throw err;
        }
        recorded[customer.id] = customer.optedIn;
        done += 1;
        state.saveSoon();
        options.onProgress?.(done, changes.length);
      },
      options.signal,
    );
  } finally {
    await state.save();
  }
  return { recorded: done, unavailable };
}
