// A hostile fleet, run as its own process so its sockets and buffers do not
// count against the broker's memory. Opens `count` TCP connections at once;
// each sends one MQTT fixed header announcing `length` bytes, then `extra`
// bytes of body (0: nothing more), and then waits. Prints a JSON line when all
// have announced, and one when the broker has closed them all, then exits.
import { connect } from "node:net";

const [port, count, length, extra] = process.argv.slice(2).map(Number);
const header = [0x10]; // CONNECT, so the announcement comes before any authentication
for (let rest = length; ;) {
  const byte = rest % 128;
  rest = Math.floor(rest / 128);
  header.push(rest > 0 ? byte | 0x80 : byte);
  if (rest === 0) break;
}
const announce = Buffer.from(header);
const body = Buffer.alloc(extra, 0x61);
const started = performance.now();
let written = 0;
let closed = 0;
for (let i = 0; i < count; i += 1) {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => undefined); // a reset is the broker's answer
  socket.resume();
  socket.once("connect", () => {
    socket.write(announce);
    if (extra > 0) socket.write(body);
    written += 1;
    if (written === count) console.log(JSON.stringify({ written }));
  });
  socket.once("close", () => {
    closed += 1;
    if (closed === count) {
      console.log(JSON.stringify({ closed, ms: Math.round(performance.now() - started) }));
      process.exit(0);
    }
  });
}
