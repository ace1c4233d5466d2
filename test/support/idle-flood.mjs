// Idle sockets that never send CONNECT, run as their own process so their file
// descriptors do not count against the broker's. Opens `count` TCP connections
// as fast as the broker accepts them and sends nothing; prints a JSON line once each has connected (or
// failed to), then one line whenever the number the broker has closed grows,
// and stays until it is killed.
import { connect } from "node:net";

const [port, count] = process.argv.slice(2).map(Number);
let connected = 0;
let failed = 0;
let closed = 0;
let reported = -1;
const report = () => {
  if (closed === reported) return;
  reported = closed;
  console.log(JSON.stringify({ closed }));
};
setInterval(report, 100);
// At most this many handshakes at once: past the listen backlog the kernel would drop completed
// handshakes the client already counts as connected, and the broker would never see those sockets.
const AT_ONCE = 256;
let started = 0;
const openOne = () => {
  if (started === count) return;
  started += 1;
  const socket = connect(port, "127.0.0.1");
  let up = false;
  socket.on("error", () => undefined); // a reset is the broker's answer
  socket.once("connect", () => {
    up = true;
    connected += 1;
    if (connected + failed === count) console.log(JSON.stringify({ connected, failed }));
    openOne();
  });
  socket.once("close", () => {
    if (up) closed += 1;
    else {
      failed += 1;
      if (connected + failed === count) console.log(JSON.stringify({ connected, failed }));
      openOne();
    }
  });
};
for (let i = 0; i < AT_ONCE; i += 1) openOne();
