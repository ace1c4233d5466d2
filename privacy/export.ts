import { Readable } from "node:stream";
import { stringify } from "csv-stringify/sync";
import yazl from "yazl";
import type { ActionRecord, Owner, Participation } from "../actions/index.ts";
import type { ConsentChange, ConsentState } from "../consent/index.ts";
import type { Link, SubjectToken, TouchpointSession } from "../subjects/index.ts";
import type { RawRow, Store } from "../store/index.ts";
import { ident, literal } from "./mentions.ts";
import { subjectHash } from "./erase.ts";
import { ERASURES } from "./erasures.ts";
import { condition, scan, shapes, type Shape } from "./scan.ts";

/** The in-memory views an export reads: what they hold is rebuilt from the same InfluxDB points the export streams. */
export interface ExportViews {
  consent: { current(subject: string): ConsentState; history(subject: string): ConsentChange[] };
  actions: {
    profileOf(owner: Owner): Record<string, unknown>;
    actionsOf(subject: string): ActionRecord[];
    participation(owner: Owner): Participation;
  };
  touchpoints: { linksOf(subject: string): Link[]; sessionsOf(subject: string): TouchpointSession[] };
  tokens: { list(subject: string): SubjectToken[] };
}

export interface ExportDeps {
  store: Store;
  views: ExportViews;
}

/** Fields never exported: hashes of secrets are not data about the customer. */
const HIDDEN = new Set(["token_hash"]);

/** A stored point as the customer sees it: time, tags and fields, without empty columns or hashes. */
function clean(row: RawRow): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row))
    if (v !== null && v !== undefined && !HIDDEN.has(k) && !k.startsWith("@")) out[k] = v;
  return out;
}

const iso = (d: Date | undefined) => (d ? d.toISOString() : null);

/** What the views know about the subject: small, the size of one customer's state. */
async function summary(subject: string, deps: ExportDeps) {
  const { views } = deps;
  const owner: Owner = `subject:${subject}`;
  const [sentiment] =
    (
      await deps.store.exec(
        `SELECT count(sentiment) AS n, mean(sentiment) AS mean FROM feedback WHERE "subject" = ${literal(subject)}`,
      )
    )[0] ?? [];
  return {
    consent: {
      current: views.consent.current(subject),
      history: views.consent
        .history(subject)
        .map((c) => ({ purpose: c.purpose, granted: c.granted, by: c.by, at: c.at.toISOString() })),
    },
    profile: views.actions.profileOf(owner),
    touchpoints: {
      linked: views.touchpoints.linksOf(subject).map((l) => ({ device: l.device, since: iso(l.since), by: l.by })),
      sessions: views.touchpoints.sessionsOf(subject).map((s) => ({ device: s.device, since: iso(s.since) })),
    },
    tokens: views.tokens
      .list(subject)
      .map((t) => ({ id: t.id, label: t.label ?? null, createdAt: iso(t.createdAt), revokedAt: iso(t.revokedAt) })),
    actions: views.actions.actionsOf(subject).map((a) => ({
      id: a.id,
      rule: a.rule,
      kind: a.kind,
      key: a.key,
      value: a.value ?? null,
      prompt: a.prompt ?? null,
      why: a.why,
      device: a.device,
      targets: a.targets,
      status: a.status,
      createdAt: new Date(a.createdAt).toISOString(),
      transitions: a.transitions,
    })),
    scores: {
      participation: views.actions.participation(owner),
      sentiment: { feedback: Number(sentiment?.n ?? 0), mean: sentiment?.mean == null ? null : Number(sentiment.mean) },
    },
  };
}

/** Erasure records of this subject: found by their salted hash, the only way they refer to anyone. */
async function* erasuresOf(subject: string, store: Store): AsyncGenerator<Record<string, unknown>> {
  for await (const rows of store.stream(`SELECT * FROM ${ident(ERASURES)}`)) {
    for (const row of rows) {
      if (typeof row.salt !== "string" || row.subject_hash !== subjectHash(subject, row.salt)) continue;
      yield { erasure: row.erasure, at: row.time, by: row.by, points: row.points };
    }
  }
}

/**
 * Everything held about the subject as one JSON document, written as it is
 * read: the views' summary (consent, profile, touchpoints, actions with
 * their lifecycle and `why`, scores), then every stored point that names
 * them, measurement by measurement, streamed from InfluxDB in chunks.
 */
export async function* exportJson(subject: string, deps: ExportDeps): AsyncGenerator<string> {
  const head = { subject, exportedAt: new Date().toISOString(), ...(await summary(subject, deps)) };
  yield JSON.stringify(head).slice(0, -1);
  yield ',"records":{';
  let measurement: string | undefined;
  let first = true;
  for await (const { shape, matches } of scan(deps.store, subject, (s) => s.name !== ERASURES)) {
    if (shape.name !== measurement) {
      yield `${measurement === undefined ? "" : "],"}${JSON.stringify(shape.name)}:[`;
      measurement = shape.name;
      first = true;
    }
    let out = "";
    for (const { row } of matches) {
      out += (first ? "" : ",") + JSON.stringify(clean(row));
      first = false;
    }
    yield out;
  }
  if (measurement !== undefined) yield "]";
  yield '},"erasures":[';
  let n = 0;
  for await (const erasure of erasuresOf(subject, deps.store)) yield (n++ > 0 ? "," : "") + JSON.stringify(erasure);
  yield "]}\n";
}

/** Spreadsheet-safe CSV: a cell that a spreadsheet would run as a formula (=, +, -, @) is escaped. */
const csv = (rows: unknown[][], columns: string[] | undefined) =>
  stringify(
    rows.map((r) => r.map((v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : v))),
    {
      ...(columns ? { header: true, columns } : {}),
      escape_formulas: true,
    },
  );

/** Columns of a measurement's file: time, its tags, its fields (the catalogue's, known before the first row). */
const columnsOf = (shape: Shape) => [
  "time",
  ...shape.tags,
  ...shape.fields.map((f) => f.key).filter((k) => !HIDDEN.has(k) && !shape.tags.includes(k)),
];

/**
 * The same export as CSV files in a zip, for people who open it in a
 * spreadsheet. Each file is produced when the zip reaches it, so the
 * records stream from InfluxDB into the archive as the client reads it.
 */
export function exportZip(subject: string, deps: ExportDeps): Readable {
  const zip = new yazl.ZipFile();
  const fail = (err: Error) => (zip.outputStream as Readable).destroy(err);
  const add = (name: string, make: () => AsyncGenerator<string>) => {
    const stream = Readable.from(make());
    stream.once("error", fail);
    zip.addReadStream(stream, name);
  };
  let head: Awaited<ReturnType<typeof summary>> | undefined;
  const summaryOnce = async () => (head ??= await summary(subject, deps));

  add("README.txt", async function* () {
    yield [
      `Everything Refeed holds about ${subject}, exported ${new Date().toISOString()}.`,
      "",
      "consent.csv       every opt-in and opt-out, with who recorded it and when",
      "profile.csv       the personalization profile that follows you to every device",
      "touchpoints.csv   devices and apps linked to you, and shared devices you are using now",
      "actions.csv       every change or suggestion made for you, one line per step of its lifecycle, with why",
      "scores.csv        what the platform derived: how often you answer prompts, the mood of your feedback",
      "records/*.csv     every stored data point that names you, one file per kind of record",
      "erasures.csv      erasures of your data (they record no erased data)",
      "",
    ].join("\n");
  });
  add("consent.csv", async function* () {
    const { consent } = await summaryOnce();
    yield csv(
      consent.history.map((c) => [c.at, c.purpose, c.granted, c.by]),
      ["at", "purpose", "granted", "by"],
    );
  });
  add("profile.csv", async function* () {
    const { profile } = await summaryOnce();
    yield csv(
      Object.entries(profile).map(([k, v]) => [k, JSON.stringify(v)]),
      ["key", "value"],
    );
  });
  add("touchpoints.csv", async function* () {
    const { touchpoints } = await summaryOnce();
    yield csv(
      [
        ...touchpoints.linked.map((l) => [l.device, "linked", l.since, l.by]),
        ...touchpoints.sessions.map((s) => [s.device, "session", s.since, ""]),
      ],
      ["device", "relation", "since", "by"],
    );
  });
  add("actions.csv", async function* () {
    const { actions } = await summaryOnce();
    const rows = actions.flatMap((a) =>
      a.transitions.map((t) => [
        a.id,
        a.rule,
        a.kind,
        a.key,
        a.value,
        a.why,
        t.status,
        t.at,
        t.device,
        t.by ?? "",
        t.reason ?? "",
      ]),
    );
    yield csv(rows, ["action", "rule", "kind", "key", "value", "why", "status", "at", "device", "by", "reason"]);
  });
  add("scores.csv", async function* () {
    const { scores } = await summaryOnce();
    const p = scores.participation;
    yield csv(
      [
        ["prompts_asked", p.asks],
        ["prompts_answered", p.answers],
        ["prompts_accepted", p.accepted],
        ["prompts_declined", p.declined],
        ["participation_rate", p.rate],
        ["feedback_scored", scores.sentiment.feedback],
        ["sentiment_mean", scores.sentiment.mean],
      ],
      ["score", "value"],
    );
  });
  // One file per measurement that can name a subject; each is scanned when the zip reaches it, one at a time.
  void (async () => {
    try {
      for (const shape of await shapes(deps.store)) {
        if (shape.name === ERASURES || (shape.name !== "action_log" && !condition(shape, subject))) continue;
        add(`records/${shape.name}.csv`, async function* () {
          const columns = columnsOf(shape);
          let header = true;
          for await (const { matches } of scan(deps.store, subject, (s) => s.name === shape.name)) {
            yield csv(
              matches.map(({ row }) => columns.map((c) => row[c])),
              header ? columns : undefined,
            );
            header = false;
          }
          if (header) yield csv([], columns);
        });
      }
      add("erasures.csv", async function* () {
        const rows: unknown[][] = [];
        for await (const e of erasuresOf(subject, deps.store)) rows.push([e.at, e.erasure, e.by, e.points]);
        yield csv(rows, ["at", "erasure", "by", "points"]);
      });
      zip.end();
    } catch (err) {
      fail(err as Error);
    }
  })();
  return zip.outputStream as Readable;
}
