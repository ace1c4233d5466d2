import { BlockList, isIP, type Socket } from "node:net";

/**
 * The addresses whose connections may begin with a PROXY protocol header (a
 * load balancer such as HAProxy with `send-proxy`): exact addresses or subnets.
 */
export function proxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split("/") as [string, string | undefined];
    const type = isIP(address) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

const SIGNATURE = Buffer.from("PROXY ");
/** The longest v1 header, CRLF included (the protocol's own bound). */
const MAX_HEADER = 107;

export type ProxyHeader =
  /** The connection did not start with a header: it came straight from its client. */
  | { kind: "none" }
  /** The balancer's client address (`UNKNOWN`: a health check or a non-TCP source; the balancer's own is kept). */
  | { kind: "proxied"; source: string | undefined }
  | { kind: "invalid"; reason: string };

/** Parses a v1 header line, without its CRLF. */
export function parseProxyLine(line: string): ProxyHeader {
  const parts = line.split(" ");
  if (parts[0] !== "PROXY") return { kind: "invalid", reason: "not a PROXY protocol header" };
  if (parts[1] === "UNKNOWN") return { kind: "proxied", source: undefined };
  if ((parts[1] !== "TCP4" && parts[1] !== "TCP6") || parts.length !== 6)
    return { kind: "invalid", reason: `PROXY header: expected 'PROXY TCP4|TCP6 src dst sport dport', got '${line}'` };
  const source = parts[2]!;
  if (isIP(source) !== (parts[1] === "TCP4" ? 4 : 6))
    return { kind: "invalid", reason: `PROXY header: '${source}' is not an ${parts[1]} address` };
  return { kind: "proxied", source };
}

/**
 * Reads a PROXY protocol v1 header off the start of a socket from a trusted
 * balancer, then puts back what followed it, so the MQTT stream starts where
 * the client's bytes do. A connection that starts otherwise is a direct one.
 * Resolves `invalid` on a malformed header, an overlong one, or none complete
 * within `timeoutMs` (a slow header is a slow-loris too).
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const finish = (header: ProxyHeader, rest: Buffer) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      resolve(header);
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const head = buffered.subarray(0, SIGNATURE.length);
      if (!SIGNATURE.subarray(0, head.length).equals(head)) return finish({ kind: "none" }, buffered);
      const end = buffered.indexOf("\r\n");
      if (end === -1) {
        if (buffered.length > MAX_HEADER)
          finish({ kind: "invalid", reason: `PROXY header longer than ${MAX_HEADER} bytes` }, Buffer.alloc(0));
        return;
      }
      finish(parseProxyLine(buffered.subarray(0, end).toString("latin1")), buffered.subarray(end + 2));
    };
    const onClose = () => finish({ kind: "invalid", reason: "closed before its first bytes" }, Buffer.alloc(0));
    const timer = setTimeout(
      () =>
        finish({ kind: "invalid", reason: `no PROXY header or MQTT bytes within ${timeoutMs} ms` }, Buffer.alloc(0)),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.once("close", onClose);
  });
}
