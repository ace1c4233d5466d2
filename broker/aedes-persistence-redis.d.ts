// aedes-persistence-redis 11 ships no types: its factory takes ioredis options and returns an Aedes persistence.
declare module "aedes-persistence-redis" {
  import type { Redis, RedisOptions } from "ioredis";
  export default function aedesPersistenceRedis(
    options?: RedisOptions & { conn?: Redis; maxSessionDelivery?: number; packetTTL?: (packet: object) => number },
  ): unknown;
}
