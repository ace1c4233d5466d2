import { readFile } from "node:fs/promises";
import { createServer, isIP, type AddressInfo, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import type { Logger } from "pino";
import type { MqttConfig } from "../config/schema.ts";
import type { Transport } from "./packet-limit.ts";
import { proxyList, readProxyHeader } from "./proxy-protocol.ts";

export interface Listeners {
  readonly tcp: { host: string; port: number };
  /** `mqtts`, when a certificate and key are configured. */
  readonly tls: { host: string; port: number } | undefined;
  /** Stops accepting; resolves once every accepted connection has closed. */
  close(): Promise<void>;
}

export class TlsConfigError extends Error {
  readonly code = "REFEED_TLS_CONFIG";
}

async function readPem(file: string, variable: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new TlsConfigError(
      `${variable}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

function listen(server: Server, port: number, host: string): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve({ host, port: (server.address() as AddressInfo).port });
    });
  });
}

/** The MQTT listeners over TCP and, optionally, TLS; each accepted stream goes to `accept`. */
export async function startListeners(
  config: MqttConfig,
  accept: (stream: Duplex, transport: Transport) => void,
  log: Logger,
): Promise<Listeners> {
  const servers: Server[] = [];
  const close = () =>
    Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))).then(
      () => undefined,
    );
  try {
    // A PUBACK or an action must not wait for the client's delayed ACK of the previous segment (Nagle: ~40 ms).
    const proxies = config.trustedProxies.length > 0 ? proxyList(config.trustedProxies) : undefined;
    const fromProxy = (socket: Socket) => {
      const remote = socket.remoteAddress;
      void readProxyHeader(socket, config.limits.connectTimeoutMs).then((header) => {
        if (header.kind === "invalid") {
          log.warn({ part: "broker", transport: "tcp", remote, reason: header.reason }, "connection refused");
          socket.destroy();
          return;
        }
        // Budgets, logs and presence see the balancer's client, not the balancer.
        if (header.kind === "proxied" && header.source)
          Object.defineProperty(socket, "remoteAddress", { value: header.source, configurable: true });
        accept(socket, "tcp");
        // The header was read in paused mode; the guard's 'data' listener alone would not start the flow again.
        socket.resume();
      });
    };
    const tcpServer = createServer({ noDelay: true }, (socket) =>
      socket.remoteAddress && proxies?.check(socket.remoteAddress, isIP(socket.remoteAddress) === 6 ? "ipv6" : "ipv4")
        ? fromProxy(socket)
        : accept(socket, "tcp"),
    );
    servers.push(tcpServer);
    const tcp = await listen(tcpServer, config.port, config.host);

    let tls: Listeners["tls"];
    if (config.tls.cert && config.tls.key) {
      const [cert, key] = await Promise.all([
        readPem(config.tls.cert, "REFEED_MQTT_TLS_CERT"),
        readPem(config.tls.key, "REFEED_MQTT_TLS_KEY"),
      ]);
      let tlsServer: TlsServer;
      try {
        // A handshake that does not finish is a slow-loris too.
        tlsServer = createTlsServer(
          { cert, key, handshakeTimeout: config.limits.connectTimeoutMs, noDelay: true },
          (socket) => accept(socket, "tls"),
        );
      } catch (err) {
        throw new TlsConfigError(
          `REFEED_MQTT_TLS_CERT / REFEED_MQTT_TLS_KEY: not a usable certificate and key (${(err as Error).message})`,
        );
      }
      tlsServer.on("tlsClientError", (err, socket) =>
        log.debug(
          { part: "broker", transport: "tls", remote: socket.remoteAddress, err: err.message },
          "TLS handshake failed",
        ),
      );
      servers.push(tlsServer);
      tls = await listen(tlsServer, config.tls.port, config.host);
    }
    return { tcp, tls, close };
  } catch (err) {
    await close();
    throw err;
  }
}
