import { DeviceError } from "./errors.ts";

/** Where the ids of handled actions are kept between runs (a file, localStorage, the device's flash). */
export interface SeenStore {
  load(): Promise<readonly string[]> | readonly string[];
  save(ids: readonly string[]): Promise<void> | void;
}

/**
 * The ids of the actions already handed to the handler, oldest first, at most `max` of them: an
 * action arrives again after a lost PUBACK or on a second connection, and the handler must see it
 * once. Bounded because actions never stop coming; ids older than the last `max` are long delivered.
 */
export class SeenActions {
  private readonly ids = new Set<string>();
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly max: number,
    private readonly store?: SeenStore,
  ) {}

  async load(): Promise<void> {
    if (!this.store) return;
    try {
      for (const id of await this.store.load()) this.remember(id);
    } catch (err) {
      throw new DeviceError("STORE_FAILED", `the seen-actions store could not be read: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** Remembers the id; resolves once the store has it, so a restart after this cannot hand it over again. */
  add(id: string): Promise<void> {
    this.remember(id);
    if (!this.store) return Promise.resolve();
    const store = this.store;
    // One save at a time, in order: a later save always holds every earlier id.
    this.saving = this.saving.then(async () => {
      try {
        await store.save([...this.ids]);
      } catch (err) {
        throw new DeviceError(
          "STORE_FAILED",
          `the seen-actions store could not be written: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    });
    const saved = this.saving;
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  private remember(id: string): void {
    this.ids.delete(id);
    this.ids.add(id);
    while (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value!);
  }
}
