import mqttPacket from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { FrameReader, decodePublish } from "../../broker/frames.ts";

const publish = (topic: string, payload: string, qos: 0 | 1, messageId?: number) =>
  mqttPacket.generate({
    cmd: "publish",
    topic,
    payload: Buffer.from(payload),
    qos,
    retain: false,
    dup: false,
    ...(messageId ? { messageId } : {}),
  });

function read(bytes: Buffer[], capture: (type: number, flags: number, length: number) => number | false = () => 0) {
  const headers: Array<[number, number]> = [];
  const bodies: Array<[number, Buffer]> = [];
  const reader = new FrameReader({
    header: (type, flags, length) => (headers.push([type, length]), capture(type, flags, length)),
    body: (type, _flags, body) => bodies.push([type, Buffer.from(body)]),
  });
  const results = bytes.map((b) => reader.push(b));
  return { headers, bodies, results, reader };
}

describe("MQTT frame reader", () => {
  it("finds every packet and its length, however the bytes are split", () => {
    const stream = Buffer.concat([
      mqttPacket.generate({ cmd: "pingreq" }),
      publish("devices/a/telemetry", "x".repeat(300), 1, 7),
      mqttPacket.generate({ cmd: "puback", messageId: 513 }),
      mqttPacket.generate({ cmd: "disconnect" }),
    ]);
    const whole = read([stream]);
    // Byte by byte gives the same packets.
    const bytewise = read([...stream].map((b) => Buffer.from([b])));
    expect(whole.headers).toEqual([
      [12, 0],
      [3, 2 + "devices/a/telemetry".length + 2 + 300],
      [4, 2],
      [14, 0],
    ]);
    expect(bytewise.headers).toEqual(whole.headers);
  });

  it("captures the requested start of a body across chunks", () => {
    const puback = mqttPacket.generate({ cmd: "puback", messageId: 0x1234 });
    const { bodies } = read([puback.subarray(0, 3), puback.subarray(3)], (type) => (type === 4 ? 2 : 0));
    expect(bodies).toEqual([[4, Buffer.from([0x12, 0x34])]]);
  });

  it("stops at a header announcing more than the caller accepts, before its body arrives", () => {
    // A CONNECT announcing 268,435,455 bytes (256 MiB - 1, the largest MQTT length), and nothing more.
    const huge = Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]);
    const { headers, results, reader } = read([huge], (_t, _f, length) => (length > 65536 ? false : 0));
    expect(headers).toEqual([[1, 268_435_455]]);
    expect(results).toEqual([false]);
    expect(reader.error).toBe("refused");
  });

  it("reports the end of each packet, including empty ones and bodies split across chunks", () => {
    const ends: number[] = [];
    const reader = new FrameReader({ header: () => 0, end: (type) => ends.push(type) });
    const connect = mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "a",
      clean: true,
      keepalive: 30,
    });
    const bytes = Buffer.concat([connect, mqttPacket.generate({ cmd: "pingreq" })]);
    reader.push(bytes.subarray(0, 5));
    expect(ends).toEqual([]); // the CONNECT is not complete yet: a slow client is still connecting
    reader.push(bytes.subarray(5));
    expect(ends).toEqual([1, 12]);
  });

  it("refuses a remaining length longer than four bytes", () => {
    const { results, reader } = read([Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]);
    expect(results).toEqual([false]);
    expect(reader.error).toBe("malformed_length");
  });

  it("decodes topic, packet id and payload of a QoS 1 publish", () => {
    const packet = publish("devices/a/actions", '{"id":"act_1"}', 1, 42);
    const { bodies } = read([packet], (type, _f, length) => (type === 3 ? length : 0));
    const decoded = decodePublish(0x02, bodies[0]![1]);
    expect(decoded).toMatchObject({ topic: "devices/a/actions", messageId: 42 });
    expect(decoded!.payload.toString()).toBe('{"id":"act_1"}');
  });
});
