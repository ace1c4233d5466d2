import { afterAll, beforeAll } from "vitest";
import { startTestCluster, type TestCluster } from "./cluster.ts";
import type { TestPlatform } from "./platform.ts";
import { settleAfterPublish, useExampleRules } from "./story.ts";

/**
 * A story's platform as three cluster nodes behind one face: every read of
 * `http`, `mqttUrl` or `wsUrl` names the next node, so a story's devices and
 * API calls spread over the nodes as a balancer would spread them, and the
 * story must hold wherever each one lands. A publish is followed by waiting
 * until the rule partitions have evaluated what was routed (on a single node
 * the rules run before the PUBACK).
 */
export function clusterStoryPlatform(...rules: string[]): () => TestPlatform {
  let cluster: TestCluster | undefined;
  let face: TestPlatform | undefined;
  beforeAll(async () => {
    cluster = await startTestCluster(3);
    for (const node of cluster.nodes) {
      await useExampleRules(node, ...rules);
      await node.restart();
    }
    settleAfterPublish(() => cluster!.rulesCaughtUp());
    face = facade(cluster);
  }, 120_000);
  afterAll(() => cluster?.close());
  return () => face!;
}

function facade(cluster: TestCluster): TestPlatform {
  let turn = 0;
  const next = () => cluster.nodes[turn++ % cluster.nodes.length]!;
  const first = cluster.node(1);
  return {
    get platform() {
      return next().platform;
    },
    config: first.config,
    get http() {
      return next().http;
    },
    get mqttUrl() {
      return next().mqttUrl;
    },
    get wsUrl() {
      return next().wsUrl;
    },
    db: first.db,
    dataDir: first.dataDir,
    rulesDir: first.rulesDir,
    logs: first.logs,
    exchanges: first.exchanges,
    async restart() {
      for (const node of cluster.nodes) await node.restart();
    },
    async stop() {
      for (const node of cluster.nodes) await node.stop();
    },
    async start() {
      for (const node of cluster.nodes) await node.start();
    },
    close: () => cluster.close(),
  };
}
