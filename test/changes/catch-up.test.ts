import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChangeFeed, Topic } from "../../changes/index.ts";
import { localChangeFeed } from "../../changes/local.ts";
import { consentChanges, startConsent } from "../../consent/index.ts";
import { keyChanges, startKeys } from "../../keys/index.ts";
import { registryChanges, startRegistry } from "../../registry/index.ts";
import { Catalog, ruleChanges } from "../../rules/catalog.ts";
import type { Store } from "../../store/index.ts";
import { openTestStore } from "../support/store.ts";

const log = pino({ level: "silent" });

/** Everything published on a topic of a feed, in order. */
function recorder<E>(feed: ChangeFeed, topic: Topic<E>): E[] {
  const seen: E[] = [];
  feed.subscribe(topic, (e) => seen.push(e));
  return seen;
}

/**
 * Cluster catch-up is "rebuild from InfluxDB, then replay the feed from
 * before the rebuild": a node that rebuilt must meet the replayed events as
 * ones it has already applied. So a stored row must parse into the very event
 * the feed carried, with the same identity, for every view.
 */
describe("a second node that rebuilt from InfluxDB takes the replayed feed as known", () => {
  let store: Store;
  let opened: Awaited<ReturnType<typeof openTestStore>> | undefined;
  beforeAll(async () => {
    opened = await openTestStore("catchup", log);
    store = opened.store;
  });
  afterAll(async () => opened?.close());

  it("for the registry, consent, keys and the rule catalog", async () => {
    const here = localChangeFeed(log);
    const carried = {
      registry: recorder(here, registryChanges),
      consent: recorder(here, consentChanges),
      keys: recorder(here, keyChanges),
      rules: recorder(here, ruleChanges),
    };
    const registry = await startRegistry(store, log, here);
    const consent = await startConsent({ store, log, changes: here });
    const keys = await startKeys({ store, log, changes: here });
    const catalog = await Catalog.open(store, log, {}, here);
    await registry.provision({ id: "tv-1", kind: "tv" });
    await registry.rotate("tv-1");
    await registry.provision({ id: "atm-1" });
    await registry.revoke("atm-1");
    await consent.record("cust-1", { analytics: true, personalization: true }, "admin");
    await consent.record("cust-1", { analytics: false }, "customer");
    const { key } = await keys.create({ name: "desk", role: "support", expiresIn: "30d" }, "admin");
    await keys.revoke(key.id, "admin");
    await catalog.put(
      JSON.stringify({ id: "r1", on: "telemetry", when: "true", then: [{ set: "x", value: 1 }] }),
      "admin",
    );
    await catalog.setEnabled("r1", false, "admin");
    expect(Object.values(carried).map((events) => events.length)).toEqual([4, 3, 2, 2]);

    const there = localChangeFeed(log);
    const registry2 = await startRegistry(store, log, there);
    const consent2 = await startConsent({ store, log, changes: there });
    const keys2 = await startKeys({ store, log, changes: there });
    const catalog2 = await Catalog.open(store, log, {}, there);
    const news: string[] = [];
    registry2.onChange((c) => news.push(`registry:${c.op}`));
    keys2.onRevoke((id) => news.push(`keys:${id}`));
    catalog2.onChange((e) => news.push(`rules:${e.op}`));
    const before = {
      devices: registry2.list(),
      consent: consent2.history("cust-1"),
      keys: keys2.list(),
      rules: catalog2.list().map(({ rule, ...entry }) => ({ ...entry, id: rule.spec.id })),
      versions: catalog2.versions("r1"),
    };
    expect(before.devices).toEqual(registry.list());
    expect(before.consent).toEqual(consent.history("cust-1"));
    expect(before.keys).toEqual(keys.list());
    expect(before.versions).toEqual(catalog.versions("r1"));

    for (const event of carried.registry) await there.publish(registryChanges, event);
    for (const event of carried.consent) await there.publish(consentChanges, event);
    for (const event of carried.keys) await there.publish(keyChanges, event);
    for (const event of carried.rules) await there.publish(ruleChanges, event);
    expect(news).toEqual([]);
    expect({
      devices: registry2.list(),
      consent: consent2.history("cust-1"),
      keys: keys2.list(),
      rules: catalog2.list().map(({ rule, ...entry }) => ({ ...entry, id: rule.spec.id })),
      versions: catalog2.versions("r1"),
    }).toEqual(before);
    expect(consent2.current("cust-1")).toEqual({ analytics: false, personalization: true, feedback: false });
  });
});
