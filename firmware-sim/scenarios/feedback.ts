import type { Random } from "../random.ts";
import type { Publish } from "./types.ts";

export type Topic = "atm" | "app" | "tv";

// Worded so that a lexicon-based scorer (AFINN, as the `sentiment` package uses) reads them the way a person would.
const POSITIVE: Record<Topic | "any", readonly string[]> = {
  any: [
    "Quick and easy, thank you!",
    "Works great, I love it.",
    "Excellent service as always.",
    "Very helpful and simple, good job.",
  ],
  atm: [
    "Fast cash and no queue, great!",
    "Love that it remembers my usual amount.",
    "Clean machine, easy and quick. Thanks!",
  ],
  app: [
    "Love the new layout, everything is easy to find.",
    "Great app, payments are fast and simple.",
    "Really happy with the home screen now.",
  ],
  tv: [
    "Picture is great and the menus are clear.",
    "The bigger text is perfect, thank you!",
    "Love the recommendations, very good.",
  ],
};
const NEGATIVE: Record<Topic | "any", readonly string[]> = {
  any: [
    "This is frustrating, it keeps failing.",
    "Terrible experience, very slow today.",
    "Bad service, I am disappointed.",
  ],
  atm: [
    "The machine froze and kept my card. Awful.",
    "Took forever to dispense cash, really annoying.",
    "Screen was broken, terrible.",
  ],
  app: [
    "The app crashed twice, very frustrating.",
    "Too slow, I hate waiting for the login.",
    "Payment failed again, this is bad.",
  ],
  tv: [
    "The screen keeps freezing, terrible.",
    "Text is too small to read, annoying.",
    "Sound drops all the time, awful.",
  ],
};

/** Share of devices that turn troubled when the fleet does not say (`--troubled`). */
export const TROUBLED_SHARE = 0.1;

/**
 * A device's customers' mood: a troubled device starts fine and turns bad
 * after a few sessions (what a support agent should notice, story 6). Once it
 * has turned, everything experience health reads says so: errors and crashes
 * in its sessions, slow answers, and customers who complain more often.
 */
export class Mood {
  private sessions = 0;

  constructor(
    private readonly random: Random,
    private readonly troubled: boolean,
    private readonly turnAfter = 3,
  ) {}

  /** Counts one more session on the device. */
  session(): void {
    this.sessions += 1;
  }

  /** This device's customers have turned negative. */
  get negative(): boolean {
    return this.troubled && this.sessions > this.turnAfter;
  }

  /** How often a session leaves feedback: unhappy customers say so more often than happy ones. */
  feedbackChance(usual: number): number {
    return this.negative ? Math.max(usual, 0.45) : usual;
  }

  /** What a session logs beside its usage: a turned device fails (errors, now and then a crash), others rarely. */
  troubles(subject: string | undefined): Publish[] {
    const out: Publish[] = [];
    const record = (name: string, props: Record<string, unknown>): Publish => ({
      channel: "events",
      record: { ...(subject ? { subject } : {}), name, props },
    });
    if (this.random.chance(this.negative ? 0.8 : 0.02)) out.push(record("error", { code: this.random.pick(ERRORS) }));
    if (this.negative && this.random.chance(0.3)) out.push(record("crash", { code: "E_WATCHDOG" }));
    return out;
  }

  /** A response time in ms: a turned device mostly misses the 500 ms target, often by far. */
  latency(): number {
    return this.negative ? this.random.int(450, 3500) : this.random.int(40, 400);
  }

  /** Free text and/or a rating, as customers leave them: mostly both, sometimes one. */
  feedback(subject: string | undefined, topic: Topic): Publish {
    const unhappy = this.negative ? this.random.chance(0.85) : this.random.chance(0.1);
    const pool = unhappy ? NEGATIVE : POSITIVE;
    const text = this.random.pick([...pool[topic], ...pool.any]);
    const rating = unhappy ? this.random.int(1, 2) : this.random.int(4, 5);
    const form = this.random.next();
    const record: Record<string, unknown> = subject ? { subject } : {};
    if (form < 0.25) record.rating = rating;
    else if (form < 0.4) record.text = text;
    else Object.assign(record, { rating, text });
    return { channel: "feedback", record };
  }

  /** The answer to an accepted rating request: always a rating, often a sentence too. */
  rating(subject: string | undefined, topic: Topic): Publish {
    const unhappy = this.negative ? this.random.chance(0.85) : this.random.chance(0.1);
    const record: Record<string, unknown> = {
      ...(subject ? { subject } : {}),
      rating: unhappy ? this.random.int(1, 2) : this.random.int(4, 5),
    };
    if (this.random.chance(0.5)) record.text = this.random.pick([...(unhappy ? NEGATIVE : POSITIVE)[topic]]);
    return { channel: "feedback", record };
  }
}

const ERRORS = ["E_TIMEOUT", "E_DISPLAY", "E_NETWORK", "E_PRINTER"] as const;

/** A rating request (examples/rules/ask-for-rating.yaml) is a suggestion on this key. */
export const RATING_REQUEST = "feedback.rating_request";
